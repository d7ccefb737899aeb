//go:build !linux

package bundle

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
)

// uname returns the output of `uname -srvm`, or the OS name where there is none.
func uname(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "uname", "-srvm").Output()
	if err != nil {
		return runtime.GOOS + "/" + runtime.GOARCH, err
	}
	return strings.TrimSpace(string(out)), nil
}
