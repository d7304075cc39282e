package tray

import (
	"os/exec"
	"syscall"
)

// detach starts cmd without a console, so it is not stopped with the tray.
func detach(cmd *exec.Cmd) {
	const detachedProcess, createNoWindow = 0x00000008, 0x08000000
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: detachedProcess | createNoWindow}
}
