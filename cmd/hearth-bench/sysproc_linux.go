package main

import "syscall"

// childSysProcAttr makes the kernel SIGKILL the daemon if the bench dies
// without cleaning up (e.g. it is itself SIGKILLed).
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
