//go:build !unix

package probe

import "os/exec"

// setProcAttr has nothing to set where there are no process groups.
func setProcAttr(cmd *exec.Cmd) {}

// killGroup kills the worker process.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}
