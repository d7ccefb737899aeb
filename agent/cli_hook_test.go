package agent_test

import (
	"fmt"

	"github.com/hsm-agent/hsm-agent/agent"
	"github.com/hsm-agent/hsm-agent/agent/cli"
)

// init gives agent's tests the command line (see agent.CLI).
func init() {
	agent.CLI.Cases, agent.CLI.CaseAction, agent.CLI.DeskTest = cli.Cases, cli.CaseAction, cli.DeskTest
	agent.CLI.Report = cli.Report
	agent.CLI.CheckConfig, agent.CLI.Check, agent.CLI.ConfigCheck = cli.CheckConfig, cli.Check, cli.ConfigCheck
	for _, c := range [][2]int{
		{agent.ExitOK, cli.ExitOK}, {agent.ExitDegraded, cli.ExitDegraded},
		{agent.ExitFailed, cli.ExitFailed}, {agent.ExitUnknown, cli.ExitUnknown},
	} {
		if c[0] != c[1] {
			panic(fmt.Sprintf("agent's tests expect check exit code %d where cli has %d", c[0], c[1]))
		}
	}
}
