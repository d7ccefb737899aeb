package agent

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// TestNewDeskBuildsEachType: the registry builds every desk kind by its
// type, returns a nil Desk (not a nil pointer in an interface) with the
// error of a bad one, names the known types for an unknown one, and
// NewDesks joins every desk's error.
func TestNewDeskBuildsEachType(t *testing.T) {
	t.Parallel()
	d, err := NewDesk(config.Desk{Name: "w", Type: config.DeskWebhook, URL: "https://desk.example/hook"}, nil, DeskOptions{})
	if err != nil || d.Name() != "w" {
		t.Errorf("webhook: %v, %v", d, err)
	}
	d, err = NewDesk(config.Desk{Name: "s", Type: config.DeskSpool, Dir: t.TempDir(), RatePerMinute: 30}, nil, DeskOptions{})
	if err != nil || d.Name() != "s" {
		t.Fatalf("spool: %v, %v", d, err)
	}
	if r, ok := d.(desk.RateLimited); !ok || r.RatePerMinute() != 30 {
		t.Error("spool desk does not report its rate")
	}
	if d, err := NewDesk(config.Desk{Name: "w", Type: config.DeskWebhook, URL: "ftp://x"}, nil, DeskOptions{}); err == nil || d != nil {
		t.Errorf("bad webhook: %v, %v; want a nil Desk and an error", d, err)
	}
	_, err = NewDesk(config.Desk{Name: "x", Type: "carrier-pigeon"}, nil, DeskOptions{})
	if err == nil || !strings.Contains(err.Error(), `"x"`) || !strings.Contains(err.Error(), "webhook") {
		t.Errorf("unknown type: %v; want an error naming the desk and the known types", err)
	}
	_, err = NewDesks([]config.Desk{
		{Name: "a", Type: config.DeskWebhook, URL: "https://desk.example/hook", SecretFile: filepath.Join(t.TempDir(), "absent")},
		{Name: "b", Type: "nope"},
	}, nil, DeskOptions{})
	if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("NewDesks: %v; want both desks' errors", err)
	}
}
