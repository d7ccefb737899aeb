package rma_test

import (
	"os"
	"testing"

	"github.com/hsm-agent/hsm-agent/internal/testutil"
)

// TestMain lets this test binary act as the probe worker of the
// end-to-end onboarding tests (onboard_e2e_test.go).
func TestMain(m *testing.M) {
	testutil.RunWorkerIfAsked()
	os.Exit(m.Run())
}
