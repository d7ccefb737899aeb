//go:build unix && !linux

package probe

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts the worker in its own process group, so that killing the
// group leaves no orphan.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// outputPipe returns a pipe for a worker's stdout whose read end is a
// blocking file outside Go's network poller.
func outputPipe() (r, w *os.File, err error) {
	var p [2]int
	syscall.ForkLock.RLock()
	err = syscall.Pipe(p[:])
	if err == nil {
		syscall.CloseOnExec(p[0])
		syscall.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(p[0]), "worker-stdout"), os.NewFile(uintptr(p[1]), "worker-stdout-w"), nil
}
