//go:build unix

package p11

import (
	"fmt"
	"os"
	"syscall"
)

// ProtocolOutput returns the descriptor a probe worker writes its events on:
// fd 3, which the agent passes in (exec.Cmd.ExtraFiles). Stdout and stderr
// belong to the PKCS#11 library. The descriptor is marked close-on-exec, so
// a helper process the library starts does not inherit it.
func ProtocolOutput() (*os.File, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(ProtocolFD, &st); err != nil {
		return nil, fmt.Errorf("probe-worker: descriptor %d, its protocol to the agent, is not open (%w); the agent starts this command itself, it is not run by hand", ProtocolFD, err)
	}
	syscall.CloseOnExec(ProtocolFD)
	return os.NewFile(ProtocolFD, "probe-protocol"), nil
}
