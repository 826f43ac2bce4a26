//go:build !linux

package kubetest

import "syscall"

// dieWithParent has no equivalent here; Cleanup stops the processes.
func dieWithParent() *syscall.SysProcAttr { return nil }
