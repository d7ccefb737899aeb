package agent

import (
	"fmt"
	"io"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// ConfigCheck validates a configuration file the way `run` would load it and
// returns the exit code: 0 valid, 1 invalid. Files the configuration names
// but that do not exist yet (libraries, PIN files) are warnings, not errors,
// because they are checked again at every probe.
func ConfigCheck(file string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(file)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		fmt.Fprintf(stderr, "%s: INVALID\n", file)
		return 1
	}
	for _, w := range cfg.CheckFiles() {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	fmt.Fprintf(stdout, "%s: OK (%d modules, %d devices, %d pools, %d desks)\n",
		file, len(cfg.Modules), len(cfg.Devices), len(cfg.Pools), len(cfg.Desks))
	return 0
}
