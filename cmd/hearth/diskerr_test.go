package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
)

// TestDiskError: a start refused by a read-only or full disk says so in
// one line that names the data dir and what to do, and exits 5 (the data
// dir cannot be used as it is); other errors are left alone. The real
// read-only mount is exercised on the installed package
// (cmd/hearth-dist's TestDebReadOnlyDataDir).
func TestDiskError(t *testing.T) {
	for _, c := range []struct {
		errno syscall.Errno
		want  string
	}{{syscall.EROFS, "is on a read-only disk"}, {syscall.ENOSPC, "is full"}} {
		err := fmt.Errorf("store: %w", &fs.PathError{Op: "open", Path: "/d/hearth.db", Err: c.errno})
		var stderr bytes.Buffer
		if code := fail(&stderr, asDiskError("/d", err)); code != exitDataDir {
			t.Errorf("%v: exit %d, want %d", c.errno, code, exitDataDir)
		}
		if msg := stderr.String(); !strings.Contains(msg, "data dir /d") || !strings.Contains(msg, c.want) {
			t.Errorf("%v: %q", c.errno, msg)
		}
	}
	other := fmt.Errorf("listen: %w", syscall.EADDRINUSE)
	if asDiskError("/d", other) != other {
		t.Error("an unrelated error was rewritten")
	}
}
