//go:build !windows

package tray

import (
	"os/exec"
	"syscall"
)

// detach starts cmd in its own session, so it is not stopped with the tray.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }
