package collector

import (
	"os"
	"testing"

	"github.com/hsm-agent/hsm-agent/internal/testutil"
)

// workerEnv makes this test binary act as `hsm-agent probe-worker` when the
// real prober starts it (see e2e_test.go).
const workerEnv = testutil.WorkerEnv

func TestMain(m *testing.M) {
	testutil.RunWorkerIfAsked()
	os.Exit(m.Run())
}
