package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/hsm-agent/hsm-agent/agent"
)

// ConfigCheck runs `config check FILE`: it validates a configuration file
// the way `run` would load it and returns the exit code: 0 valid, 1
// invalid. It applies exactly the checks of a reload (agent.ValidateConfig):
// the file itself, every desk's secrets, and every module library loaded by
// a fresh probe worker. PIN files that do not exist yet are warnings, not
// errors, because they are read again at every self-test.
func ConfigCheck(file string, stdout, stderr io.Writer) int {
	cfg, warnings, err := agent.ValidateConfig(context.Background(), file)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		fmt.Fprintf(stderr, "%s: INVALID\n", file)
		return 1
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %v\n", w)
	}
	fmt.Fprintf(stdout, "%s: OK (%d modules, %d devices, %d pools, %d desks)\n",
		file, len(cfg.Modules), len(cfg.Devices), len(cfg.Pools), len(cfg.Desks))
	if len(cfg.Devices) == 0 {
		fmt.Fprintln(stdout, discoveryNote)
	}
	return 0
}

// discoveryNote explains an inventory without devices.
const discoveryNote = "no devices: the agent runs in discovery mode, reports every token as unexpected and opens no case; " +
	"`hsm-agent check` prints the devices: entries to paste into the inventory"
