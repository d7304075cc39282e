package main

import "context"

// macOSBundles packs the macos artifacts. Not built yet (issue 13).
func macOSBundles(ctx context.Context, b *Build) ([]Artifact, error) { return nil, nil }
