//go:build !unix

package bundle

import "os/exec"

// isolate has no process groups to set up here; a timeout kills the
// command itself (exec.CommandContext's default).
func isolate(cmd *exec.Cmd) {}
