package agent

import (
	"fmt"
	"os"
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

// TestNewDeskJiraAndPagerDuty: the registry builds the jira and pagerduty
// desks from their configuration, reading their secrets at once.
func TestNewDeskJiraAndPagerDuty(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := NewDesk(config.Desk{Name: "j", Type: config.DeskJira, Variant: config.JiraCloud, URL: "https://example.atlassian.net",
		Email: "ops@example.com", TokenFile: secret, Project: "OPS", IssueType: "Incident"}, nil, DeskOptions{})
	if err != nil || d.Name() != "j" || fmt.Sprint(d) != `jira desk "j"` {
		t.Errorf("jira: %v, %v", d, err)
	}
	d, err = NewDesk(config.Desk{Name: "p", Type: config.DeskPagerDuty, Role: config.RolePager, RoutingKeyFile: secret}, nil, DeskOptions{})
	if err != nil || d.Name() != "p" || strings.Contains(fmt.Sprintf("%v %+v %#v", d, d, d), "s3cret") {
		t.Errorf("pagerduty: %v, %v", d, err)
	}
	if d, err := NewDesk(config.Desk{Name: "p", Type: config.DeskPagerDuty, RoutingKeyFile: filepath.Join(dir, "absent")}, nil, DeskOptions{}); err == nil || d != nil ||
		!strings.Contains(err.Error(), "routing_key_file") {
		t.Errorf("pagerduty without its key: %v, %v", d, err)
	}
}
