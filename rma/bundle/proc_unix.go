//go:build unix

package bundle

import (
	"os/exec"
	"syscall"
)

// isolate puts a diagnostic command in its own process group, so that a
// timeout or cancel kills everything it started, and (on Linux) has the
// kernel kill it if the daemon dies.
func isolate(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setPdeathsig(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
			return cmd.Process.Kill()
		}
		return nil
	}
}
