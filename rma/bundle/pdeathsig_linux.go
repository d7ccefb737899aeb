package bundle

import "syscall"

// setPdeathsig has the kernel SIGKILL the command when the daemon dies.
func setPdeathsig(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
