//go:build !darwin

package main

import "io"

// openedAsApp: only macOS opens a bundle (app_darwin.go).
func openedAsApp(args []string, stdout, stderr io.Writer) (int, bool) { return 0, false }
