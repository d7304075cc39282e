package main

import "context"

// windowsInstallers packs the windows artifacts. Not built yet (issue 13).
func windowsInstallers(ctx context.Context, b *Build) ([]Artifact, error) { return nil, nil }
