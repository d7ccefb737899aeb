package jira_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/desktest"
	"github.com/hsm-agent/hsm-agent/rma/desk/jira"
)

const token = "tok-SECRET-123"

// variantSetup is a desk config of one variant and the Authorization the
// fake expects for it.
func variantSetup(t *testing.T, variant string) (config.Desk, string) {
	t.Helper()
	tf := filepath.Join(t.TempDir(), "jira.token")
	if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Desk{Name: "jira", Type: config.DeskJira, Role: config.RoleVendor, Variant: variant, TokenFile: tf}
	auth := "Bearer " + token
	switch variant {
	case config.JiraCloud:
		cfg.Email, cfg.Project, cfg.IssueType = "ops@example.com", "OPS", "Incident"
		auth = basic("ops@example.com", token)
	case config.JiraDataCenter:
		cfg.Project, cfg.IssueType = "OPS", "Incident"
	case config.JiraServiceManagement:
		cfg.Email, cfg.ServiceDeskID, cfg.RequestTypeID = "ops@example.com", "4", "25"
		auth = basic("ops@example.com", token)
	}
	return cfg, auth
}

func newDesk(t *testing.T, cfg config.Desk, url string) *jira.Desk {
	t.Helper()
	cfg.URL = url
	d, err := jira.New(cfg, nil, jira.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func send(t *testing.T, d *jira.Desk, ev rma.DeskEvent, bundle string) string {
	t.Helper()
	id, retryable, err := d.Send(context.Background(), desktest.Message(t, "jira", ev, bundle, false))
	if err != nil {
		t.Fatalf("%s: %v (retryable %v)", ev.Event, err, retryable)
	}
	return id
}

// text flattens a description or comment (ADF or plain) to its text.
func text(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// TestVariantsLifecycle: for each variant, against a server that
// implements its documented endpoints: a case opens one issue with the
// label, the priority, the facts and the bundle attached; a second open
// for the same dedup key finds it (no second issue, no second file); an
// update is a comment; the close comments and takes the transition to
// Done; the token goes out only as the variant's Authorization.
func TestVariantsLifecycle(t *testing.T) {
	t.Parallel()
	for _, variant := range []string{config.JiraCloud, config.JiraDataCenter, config.JiraServiceManagement} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			cfg, auth := variantSetup(t, variant)
			f := newFakeJira(t, variant, auth)
			d := newDesk(t, cfg, f.srv.URL)
			c := desktest.Case("HA-1")
			bundle := desktest.Bundle(t, "BUNDLE-BYTES")
			opened := desktest.Event(rma.EventOpened, 1, c)
			opened.Step = &rma.StepRecord{Event: rma.StepConfirm, Request: desktest.Request()}
			key := send(t, d, opened, bundle)
			if again := send(t, d, opened, bundle); again != key {
				t.Errorf("second open answered %q, want the existing %q", again, key)
			}
			issues, creates := f.snapshot()
			if len(issues) != 1 || creates != 1 || issues[0].Key != key {
				t.Fatalf("issues %+v, creates %d, want exactly one (%s)", issues, creates, key)
			}
			is := issues[0]
			if is.Label != "hsm-SN-HA-1_hardware_missing" || is.Priority != "Highest" || is.Summary != "[S1] hsm-HA-1 is missing" {
				t.Errorf("label %q priority %q summary %q", is.Label, is.Priority, is.Summary)
			}
			desc := text(is.Description)
			for _, want := range []string{"SN-HA-1", "hsm-HA-1", "Model", "Firmware", "production", "payments 1 of 2 members healthy",
				"premium-plus", "Contract ID", "12.60.11", "1 Vault Road, London", "Sam Ops", "+44 20 7946 0999"} {
				if !strings.Contains(desc, want) {
					t.Errorf("description lacks %q:\n%s", want, desc)
				}
			}
			if got := f.attached(key); got != "hsm-bundle.tar.gz:BUNDLE-BYTES" || len(is.Attachments) != 1 {
				t.Errorf("attachment %q (%d files), want the bundle once", got, len(is.Attachments))
			}
			send(t, d, desktest.Event(rma.EventUpdated, 2, c), "")
			send(t, d, desktest.Event(rma.EventClosed, 3, c), "")
			issues, _ = f.snapshot()
			is = issues[0]
			if len(is.Comments) != 2 || !strings.Contains(text(is.Comments[0]), "case.updated") || !strings.Contains(text(is.Comments[1]), "case.closed") {
				t.Errorf("comments %v", is.Comments)
			}
			if !is.Done {
				t.Error("the close did not resolve the issue")
			}
			if strings.Contains(desc+text(is.Comments), token) {
				t.Error("the token appears in the issue")
			}
		})
	}
}

// TestPriorityMapping: severity 1-4 go out as Highest, High, Medium, Low,
// and desks[].priorities overrides single severities.
func TestPriorityMapping(t *testing.T) {
	t.Parallel()
	cfg, auth := variantSetup(t, config.JiraDataCenter)
	cfg.Priorities = map[int]string{1: "Blocker"}
	f := newFakeJira(t, config.JiraDataCenter, auth)
	d := newDesk(t, cfg, f.srv.URL)
	for sev := 1; sev <= 4; sev++ {
		c := desktest.Case(fmt.Sprintf("HA-%d", sev))
		c.Severity = sev
		send(t, d, desktest.Event(rma.EventOpened, 1, c), "")
	}
	issues, _ := f.snapshot()
	var got []string
	for _, is := range issues {
		got = append(got, is.Priority)
	}
	if fmt.Sprint(got) != "[Blocker High Medium Low]" {
		t.Errorf("priorities %v", got)
	}
	for sev, want := range map[int]string{1: "Highest", 2: "High", 3: "Medium", 4: "Low", 0: ""} {
		if p := jira.Priority(sev, nil); p != want {
			t.Errorf("Priority(%d) = %q, want %q", sev, p, want)
		}
	}
}

// TestCloseWithoutDoneTransition: a workflow with no transition to Done
// leaves the issue open and the close's comment says so.
func TestCloseWithoutDoneTransition(t *testing.T) {
	t.Parallel()
	cfg, auth := variantSetup(t, config.JiraCloud)
	f := newFakeJira(t, config.JiraCloud, auth)
	f.noDone = true
	d := newDesk(t, cfg, f.srv.URL)
	c := desktest.Case("HA-2")
	send(t, d, desktest.Event(rma.EventOpened, 1, c), "")
	send(t, d, desktest.Event(rma.EventCancelled, 2, c), "")
	issues, _ := f.snapshot()
	if issues[0].Done || len(issues[0].Comments) != 1 || !strings.Contains(text(issues[0].Comments[0]), "no transition to a Done status") {
		t.Errorf("issue %+v", issues[0])
	}
}

// TestWithheldBundleAttachedOnApproval: upload: approve holds the bundle
// back at open; case.approved attaches it.
func TestWithheldBundleAttachedOnApproval(t *testing.T) {
	t.Parallel()
	cfg, auth := variantSetup(t, config.JiraServiceManagement)
	f := newFakeJira(t, config.JiraServiceManagement, auth)
	d := newDesk(t, cfg, f.srv.URL)
	c := desktest.Case("HA-3")
	bundle := desktest.Bundle(t, "HELD")
	if _, _, err := d.Send(context.Background(), desktest.Message(t, "jira", desktest.Event(rma.EventOpened, 1, c), bundle, true)); err != nil {
		t.Fatal(err)
	}
	issues, _ := f.snapshot()
	if len(issues[0].Attachments) != 0 || !strings.Contains(text(issues[0].Description), "held until an operator approves") {
		t.Fatalf("withheld bundle: %+v", issues[0])
	}
	send(t, d, desktest.Event(rma.EventBundleApproved, 2, c), bundle)
	if got := f.attached(issues[0].Key); got != "hsm-bundle.tar.gz:HELD" {
		t.Errorf("attachment after approval %q", got)
	}
}

// TestDeskTest: the test event reads myself and the project (or service
// desk and request type) and creates nothing; a wrong token is "auth".
func TestDeskTest(t *testing.T) {
	t.Parallel()
	for _, variant := range []string{config.JiraCloud, config.JiraDataCenter, config.JiraServiceManagement} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			cfg, auth := variantSetup(t, variant)
			f := newFakeJira(t, variant, auth)
			got, err := desk.Test(context.Background(), newDesk(t, cfg, f.srv.URL))
			if err != nil || !strings.Contains(got, "test only") || !strings.Contains(got, "nothing created") {
				t.Errorf("desk test: %q, %v", got, err)
			}
			if issues, _ := f.snapshot(); len(issues) != 0 {
				t.Errorf("the test created %d issues", len(issues))
			}
			f.auth = "Bearer other"
			_, err = desk.Test(context.Background(), newDesk(t, cfg, f.srv.URL))
			if err == nil || !strings.Contains(err.Error(), "auth failed") || strings.Contains(err.Error(), token) {
				t.Errorf("desk test with a refused token: %v", err)
			}
		})
	}
}

// TestOutboxRetriesMakeNoDuplicate drives the desk through the real
// outbox worker and SQLite store: a 429 with Retry-After, and a 500
// answered after Jira created the issue, both end in exactly one issue,
// kept as the case's desk reference.
func TestOutboxRetriesMakeNoDuplicate(t *testing.T) {
	t.Parallel()
	for name, hook := range map[string]func(n int, w http.ResponseWriter) (int, bool){
		"429 Retry-After": func(n int, w http.ResponseWriter) (int, bool) {
			if n == 0 {
				w.Header().Set("Retry-After", "1")
				return http.StatusTooManyRequests, false
			}
			return 0, false
		},
		"500 after create, then 200": func(n int, _ http.ResponseWriter) (int, bool) {
			if n == 0 {
				return http.StatusInternalServerError, true
			}
			return 0, false
		},
	} {
		for _, variant := range []string{config.JiraCloud, config.JiraDataCenter, config.JiraServiceManagement} {
			t.Run(name+"/"+variant, func(t *testing.T) {
				t.Parallel()
				cfg, auth := variantSetup(t, variant)
				f := newFakeJira(t, variant, auth)
				f.onCreate = hook
				row, c := desktest.Outbox(t, newDesk(t, cfg, f.srv.URL), desktest.Case("HA-9"), rma.EventOpened, "")
				issues, _ := f.snapshot()
				if row.State != rma.DeliveryDelivered || row.Attempts < 2 || len(issues) != 1 {
					t.Fatalf("row %s after %d attempts (%s), %d issues; want delivered on a retry, one issue", row.State, row.Attempts, row.LastError, len(issues))
				}
				if c.DeskRefs["jira"] != issues[0].Key {
					t.Errorf("case desk ref %q, want %s", c.DeskRefs["jira"], issues[0].Key)
				}
			})
		}
	}
}

// TestLabel: dedup keys become labels without spaces, one-to-one.
func TestLabel(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"SN1/hardware/missing": "hsm-SN1_hardware_missing",
		"SN 1/a_b/c~d":         "hsm-SN~201_a~5Fb_c~7Ed",
	} {
		if got := jira.Label(key); got != want {
			t.Errorf("Label(%q) = %q, want %q", key, got, want)
		}
	}
	if jira.Label("a/b") == jira.Label("a_b") {
		t.Error("two keys share a label")
	}
}
