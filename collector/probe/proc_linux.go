//go:build linux

package probe

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts the worker in its own process group (so that killing the
// group leaves no orphan) and has the kernel kill it if the daemon dies.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// outputPipe returns a pipe for a worker's stdout. The read end is a
// blocking file outside Go's network poller, so that a worker's writes do
// not wake this process while the reader pauses between batches; the pipe
// is enlarged so that a worker rarely waits for the reader.
func outputPipe() (r, w *os.File, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(p[0]), fSetPipeSize, 1<<20) // best effort
	return os.NewFile(uintptr(p[0]), "worker-stdout"), os.NewFile(uintptr(p[1]), "worker-stdout-w"), nil
}

const fSetPipeSize = 1031 // F_SETPIPE_SZ
