//go:build !unix

package daemon

import "syscall"

// writeFD is not tried outside Unix: every write goes under the armed
// deadline, as before.
func writeFD(uintptr, []byte) (int, error) { return 0, syscall.EAGAIN }
