package collector

import (
	"os"
	"testing"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// workerEnv makes this test binary act as `hsm-agent probe-worker` when the
// real prober starts it (see e2e_test.go).
const workerEnv = "HSM_AGENT_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) == "1" {
		os.Exit(p11.WorkerMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
