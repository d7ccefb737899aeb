package agent

import (
	"context"
	"io"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
)

// CLI holds the commands of package agent/cli for agent's own tests, which
// drive the command line against a site and a running daemon. agent/cli
// imports agent, so these tests cannot import it: cli_hook_test.go
// (package agent_test, compiled into the same test binary) fills CLI in
// before any test runs.
var CLI struct {
	Cases, CaseAction, DeskTest func(context.Context, []string, io.Writer, io.Writer) int
	// Report is `report sla`.
	Report func(context.Context, []string, io.Writer, io.Writer) int
	// CheckConfig is `check` on a loaded configuration with the given
	// probe worker command.
	CheckConfig func(ctx context.Context, cfg *config.Config, workerCommand []string, asJSON bool, stdout, stderr io.Writer) int
	Check       func(context.Context, []string, io.Writer, io.Writer) int
	ConfigCheck func(string, io.Writer, io.Writer) int
}

// The exit codes of `hsm-agent check` (cli.Exit*; cli_hook_test.go checks
// that they agree).
const (
	ExitOK       = 0
	ExitDegraded = 1
	ExitFailed   = 2
	ExitUnknown  = 3
)

// CaseDetail is the JSON of `cases show ID --json` (cli.CaseDetail).
type CaseDetail struct {
	rma.Case
	Events     []rma.Event    `json:"events"`
	Deliveries []rma.Delivery `json:"deliveries"`
}
