//go:build !linux

package main

import "syscall"

// childSysProcAttr has no parent-death signal outside Linux; the bench's
// own cleanup has to do.
func childSysProcAttr() *syscall.SysProcAttr { return nil }
