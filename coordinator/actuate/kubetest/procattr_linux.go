package kubetest

import "syscall"

// dieWithParent makes a control-plane process die with the test binary, even one killed hard.
func dieWithParent() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
