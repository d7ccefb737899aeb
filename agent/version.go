package agent

import (
	"fmt"
	"runtime"
)

// Version is the agent's version, set at build time with
// -ldflags "-X github.com/hsm-agent/hsm-agent/agent.Version=...".
var Version = "dev"

// VersionString is what `hsm-agent version` prints.
func VersionString() string {
	return fmt.Sprintf("hsm-agent %s (%s, %s/%s)", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
