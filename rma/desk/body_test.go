package desk_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/spool"
)

// documented lists the keys of the webhook desk event in design.md
// ("Webhook desk event").
var documented = map[string][]string{
	"":       {"event", "sequence", "sent_at", "case", "bundle"},
	"case":   {"id", "dedup_key", "serial", "device", "fault", "kind", "severity", "tier", "flow", "state", "environment", "pool", "summary", "description", "opened_at", "rma_number", "due"},
	"bundle": {"name", "sha256", "size", "content_base64"},
}

func keys(m map[string]json.RawMessage) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func missingKeys(m map[string]json.RawMessage, want []string) []string {
	var out []string
	for _, k := range want {
		if _, ok := m[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func bundleFile(t *testing.T) (string, []byte) {
	t.Helper()
	content := bytes.Repeat([]byte("diagnostics bundle bytes\n"), 1000)
	p := filepath.Join(t.TempDir(), "bundles", "SN1-20260301T120000Z.tar.gz")
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, content
}

func TestBuildBodyMatchesTheDocumentedEvent(t *testing.T) {
	t.Parallel()
	path, content := bundleFile(t)
	row := rma.Delivery{ID: 7, CaseID: "c1", Seq: 1, Desk: "vendor", IdempotencyKey: "c1:1", Payload: eventPayload("c1", 1), BundlePath: path}
	now := time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC)
	body, err := desk.BuildBody(row, now)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatal(err)
	}
	if m := missingKeys(top, documented[""]); m != nil {
		t.Errorf("event lacks %v (has %v)", m, keys(top))
	}
	for _, part := range []string{"case", "bundle"} {
		var sub map[string]json.RawMessage
		if err := json.Unmarshal(top[part], &sub); err != nil {
			t.Fatalf("%s: %v", part, err)
		}
		if m := missingKeys(sub, documented[part]); m != nil {
			t.Errorf("%s lacks %v (has %v)", part, m, keys(sub))
		}
	}
	var ev struct {
		Event    string `json:"event"`
		Sequence int    `json:"sequence"`
		SentAt   string `json:"sent_at"`
		Case     struct {
			ID       string          `json:"id"`
			Severity int             `json:"severity"`
			OpenedAt time.Time       `json:"opened_at"`
			Due      json.RawMessage `json:"due"`
		} `json:"case"`
		Bundle rma.BundleRef `json:"bundle"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	got, _ := base64.StdEncoding.DecodeString(ev.Bundle.ContentBase64)
	switch {
	case ev.Event != "case.opened" || ev.Sequence != 1 || ev.SentAt != "2026-03-01T12:00:05Z":
		t.Errorf("event %q sequence %d sent_at %q", ev.Event, ev.Sequence, ev.SentAt)
	case ev.Case.ID != "c1" || ev.Case.Severity != 1 || ev.Case.OpenedAt.IsZero() || string(ev.Case.Due) != "{}":
		t.Errorf("case: %+v", ev.Case)
	case ev.Bundle.Name != "SN1-20260301T120000Z.tar.gz" || ev.Bundle.SHA256 != hex.EncodeToString(sum[:]) ||
		ev.Bundle.Size != int64(len(content)) || !bytes.Equal(got, content) || ev.Bundle.Withheld:
		t.Errorf("bundle: name %q sha256 %q size %d, content %d bytes, withheld %v", ev.Bundle.Name, ev.Bundle.SHA256, ev.Bundle.Size, len(got), ev.Bundle.Withheld)
	}
}

func TestBuildBodyWithheldBundle(t *testing.T) {
	t.Parallel()
	path, content := bundleFile(t)
	row := rma.Delivery{CaseID: "c1", Seq: 1, Payload: eventPayload("c1", 1), BundlePath: path, WithholdBundle: true}
	body, err := desk.BuildBody(row, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var ev rma.DeskEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	if ev.Bundle == nil || !ev.Bundle.Withheld || ev.Bundle.ContentBase64 != "" || ev.Bundle.SHA256 != hex.EncodeToString(sum[:]) || ev.Bundle.Size != int64(len(content)) {
		t.Errorf("withheld bundle: %+v", ev.Bundle)
	}
	if bytes.Contains(body, []byte("content_base64")) {
		t.Error("a withheld bundle's content went into the body")
	}
}

func TestBuildBodyWithoutBundle(t *testing.T) {
	t.Parallel()
	body, err := desk.BuildBody(rma.Delivery{CaseID: "c1", Seq: 2, Payload: eventPayload("c1", 2)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(body, []byte(`"bundle"`)) {
		t.Errorf("body without bundle path has a bundle: %s", body)
	}
}

func TestBuildBodyBundleProblems(t *testing.T) {
	t.Parallel()
	gone := filepath.Join(t.TempDir(), "pruned.tar.gz")
	body, err := desk.BuildBody(rma.Delivery{CaseID: "c1", Seq: 1, Payload: eventPayload("c1", 1), BundlePath: gone}, time.Now())
	if !errors.Is(err, desk.ErrBundleMissing) || body == nil || !json.Valid(body) {
		t.Errorf("missing bundle: err %v, body %s; want ErrBundleMissing with a usable body", err, body)
	}
	_, err = desk.BuildBody(rma.Delivery{CaseID: "c1", Seq: 1, Payload: eventPayload("c1", 1), BundlePath: t.TempDir()}, time.Now())
	if desk.ReasonOf(err) != desk.ReasonBundle {
		t.Errorf("unreadable bundle: %v; want a bundle_error", err)
	}
	_, err = desk.BuildBody(rma.Delivery{CaseID: "c1", Seq: 1, Payload: json.RawMessage(`[1,2]`)}, time.Now())
	if desk.ReasonOf(err) != desk.ReasonInvalid {
		t.Errorf("bad payload: %v; want invalid", err)
	}
}

func TestTestSendsAMarkedEvent(t *testing.T) {
	t.Parallel()
	var got []byte
	srv := newDeskServer(t, func(w http.ResponseWriter) {
		_, _ = io.WriteString(w, `{"ticket_id":"TEST-1"}`)
	})
	d := webhookDesk(t, "vendor", srv.srv.URL)
	ticket, err := desk.Test(context.Background(), d)
	if err != nil || ticket != "TEST-1" {
		t.Fatalf("Test = %q, %v", ticket, err)
	}
	got = srv.all()[0].body
	var ev rma.DeskEvent
	if err := json.Unmarshal(got, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Event != "desk.test" || !ev.Test || !strings.HasPrefix(ev.Case.ID, "test-") || ev.Case.Summary != desk.TestSummary || ev.SentAt == "" || ev.Bundle != nil {
		t.Errorf("test event: %s", got)
	}
	if k := srv.all()[0].key; k != ev.Case.ID+":1" {
		t.Errorf("Idempotency-Key %q", k)
	}

	refused := newDeskServer(t, func(w http.ResponseWriter) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	_, err = desk.Test(context.Background(), webhookDesk(t, "vendor", refused.srv.URL))
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), `"vendor"`) {
		t.Errorf("refused test: %v", err)
	}

	dir := t.TempDir()
	sp, err := spool.New(config.Desk{Name: "spool", Type: config.DeskSpool, Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ticket, err = desk.Test(context.Background(), sp)
	if err != nil || !strings.HasPrefix(ticket, "test-") {
		t.Fatalf("spool Test = %q, %v", ticket, err)
	}
	if _, err := os.Stat(filepath.Join(dir, ticket)); err != nil {
		t.Errorf("spool test event file: %v", err)
	}
}
