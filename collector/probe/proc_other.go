//go:build !unix

package probe

import (
	"os"
	"os/exec"
)

// setProcAttr has nothing to set where there are no process groups.
func setProcAttr(cmd *exec.Cmd) {}

// killGroup kills the worker process.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}

// outputPipe returns a pipe for a worker's stdout.
func outputPipe() (r, w *os.File, err error) { return os.Pipe() }

// attachProtocol makes w the worker's stdout: without inherited extra
// descriptors the protocol shares stdout with the library.
func attachProtocol(cmd *exec.Cmd, w *os.File) { cmd.Stdout = w }
