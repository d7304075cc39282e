package main

import "context"

// linuxPackages packs the linux artifacts. Not built yet (issue 13).
func linuxPackages(ctx context.Context, b *Build) ([]Artifact, error) { return nil, nil }
