package agent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// TestNewDeskBuildsITSM: the registry builds the zendesk and servicenow
// desks by their type, and returns a nil Desk for a missing credential file.
func TestNewDeskBuildsITSM(t *testing.T) {
	t.Parallel()
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte("t0k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []config.Desk{
		{Name: "zd", Type: config.DeskZendesk, URL: "https://example.zendesk.com", Email: "a@example.com", TokenFile: tf},
		{Name: "snow", Type: config.DeskServiceNow, URL: "https://example.service-now.com", AssignmentGroup: "HSM", TokenFile: tf},
	} {
		d, err := NewDesk(cfg, nil, DeskOptions{})
		if err != nil || d.Name() != cfg.Name {
			t.Errorf("%s: %v, %v", cfg.Type, d, err)
		}
		cfg.TokenFile = filepath.Join(t.TempDir(), "absent")
		if d, err := NewDesk(cfg, nil, DeskOptions{}); err == nil || d != nil {
			t.Errorf("%s without its token: %v, %v; want a nil Desk and an error", cfg.Type, d, err)
		}
	}
}
