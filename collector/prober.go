package collector

import (
	"log/slog"

	"github.com/hsm-agent/hsm-agent/collector/probe"
)

// defaultNewProber runs each module in real probe workers.
func defaultNewProber(opts probe.Options, logger *slog.Logger) ModuleProber {
	return probe.New(opts, logger)
}
