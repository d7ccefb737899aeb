package rt_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/rt"
)

// TestPriorityTable is the severity -> RT Priority table of the package doc.
func TestPriorityTable(t *testing.T) {
	t.Parallel()
	for sev, want := range map[int]int{1: 100, 2: 75, 3: 50, 4: 25, 0: 0, 5: 0} {
		if got := rt.Priority(sev); got != want {
			t.Errorf("Priority(%d) = %d, want %d", sev, got, want)
		}
	}
}

func tokenDesk(t *testing.T, f *fakeRT, mod func(*config.Desk)) *rt.Desk {
	cfg := config.Desk{URL: f.srv.URL, Queue: "General", TokenFile: writeFile(t, "rt.token", "s3cr3t-token\n")}
	if mod != nil {
		mod(&cfg)
	}
	return newDesk(t, cfg)
}

// TestOpenMapsTheCase: one case.opened searches the queue's active tickets
// by the subject tag, then creates one ticket with the severity's priority,
// every fact support-model.md section 5 asks for, and the bundle attached.
func TestOpenMapsTheCase(t *testing.T) {
	t.Parallel()
	f := newFakeRT(t)
	d := tokenDesk(t, f, nil)
	c := testCase("SN1", 3)
	bundle := writeFile(t, "hsm-a.tar.gz", "bundle-bytes")
	id, _, err := d.Send(context.Background(), message(t, rma.EventOpened, 1, c, confirmStep(), bundle, false))
	if err != nil || id != "1" {
		t.Fatalf("Send: %q, %v", id, err)
	}
	hits, tickets := f.snapshot()
	if len(tickets) != 1 {
		t.Fatalf("%d tickets, want 1", len(tickets))
	}
	for _, h := range hits {
		if h.Auth != "token s3cr3t-token" {
			t.Errorf("%s %s: Authorization %q, want the token", h.Method, h.Path, h.Auth)
		}
	}
	if hits[0].Method != http.MethodGet || hits[0].Path != "tickets" ||
		hits[0].Query != "Queue = 'General' AND Status = '__Active__' AND Subject LIKE '[hsm:SN1/hardware/selftest_failed]'" {
		t.Errorf("first request %s %s query %q: want the TicketSQL search of active tickets with the tag", hits[0].Method, hits[0].Path, hits[0].Query)
	}
	b := tickets[0].Body
	if b["Queue"] != "General" || b["Priority"] != float64(50) || b["ContentType"] != "text/plain" {
		t.Errorf("create body Queue %v Priority %v ContentType %v; want General, 50, text/plain", b["Queue"], b["Priority"], b["ContentType"])
	}
	if s, _ := b["Subject"].(string); !strings.HasPrefix(s, "[S3] ") || !strings.HasSuffix(s, "[hsm:SN1/hardware/selftest_failed]") {
		t.Errorf("subject %q", s)
	}
	text, _ := b["Content"].(string)
	for _, want := range []string{"Serial:", "SN1", "Device:", "hsm-a", "Model:", "Firmware:", "Environment:", "production",
		"Pool impact:", "payments 1 of 2 healthy members left", "Tier:", "premium", "Contract ID:",
		"Requested firmware:  12.80", "Ship to address:     1 Dock Road, London", "Ship to contact:     Site Ops", "Diagnostics bundle attached: hsm-a.tar.gz"} {
		if !strings.Contains(text, want) {
			t.Errorf("ticket text lacks %q:\n%s", want, text)
		}
	}
	att, _ := b["Attachments"].([]any)
	if len(att) != 1 {
		t.Fatalf("attachments %v, want the bundle", b["Attachments"])
	}
	a := att[0].(map[string]any)
	if a["FileName"] != "hsm-a.tar.gz" || a["FileType"] != "application/gzip" || a["FileContent"] != base64.StdEncoding.EncodeToString([]byte("bundle-bytes")) {
		t.Errorf("attachment %v", a)
	}
}

// TestDedupField puts the key in the named custom field and searches it.
func TestDedupField(t *testing.T) {
	t.Parallel()
	f := newFakeRT(t)
	d := tokenDesk(t, f, func(c *config.Desk) { c.DedupField = "HSM Key" })
	c := testCase("SN2", 1)
	for range 2 {
		if _, _, err := d.Send(context.Background(), message(t, rma.EventOpened, 1, c, nil, "", false)); err != nil {
			t.Fatal(err)
		}
	}
	hits, tickets := f.snapshot()
	if len(tickets) != 1 {
		t.Fatalf("two opens made %d tickets, want 1", len(tickets))
	}
	if cf, _ := tickets[0].Body["CustomFields"].(map[string]any); cf["HSM Key"] != c.DedupKey {
		t.Errorf("CustomFields %v, want HSM Key = %s", tickets[0].Body["CustomFields"], c.DedupKey)
	}
	if !strings.HasSuffix(hits[0].Query, "CF.{HSM Key} = 'SN2/hardware/selftest_failed'") {
		t.Errorf("search %q does not look in the custom field", hits[0].Query)
	}
}

// TestLaterEventsComment: later events are comments on the found ticket,
// a withheld bundle goes with case.approved, a reopening's bundle with
// case.reopened, and close resolves in the same request.
func TestLaterEventsComment(t *testing.T) {
	t.Parallel()
	f := newFakeRT(t)
	d := tokenDesk(t, f, nil)
	c := testCase("SN3", 2)
	bundle := writeFile(t, "b.tar.gz", "held")
	ctx := context.Background()
	steps := []struct {
		event    string
		withhold bool
	}{{rma.EventOpened, true}, {rma.EventUpdated, false}, {rma.EventBundleApproved, false}, {rma.EventReopened, false}, {rma.EventClosed, false}}
	for i, s := range steps {
		id, _, err := d.Send(ctx, message(t, s.event, i+1, c, nil, bundle, s.withhold))
		if err != nil || id != "1" {
			t.Fatalf("%s: %q, %v", s.event, id, err)
		}
	}
	hits, tickets := f.snapshot()
	if len(tickets) != 1 || tickets[0].Status != "resolved" {
		t.Fatalf("tickets %+v: want one, resolved", tickets)
	}
	if _, ok := tickets[0].Body["Attachments"]; ok {
		t.Error("a withheld bundle was attached on create")
	}
	if !strings.Contains(tickets[0].Body["Content"].(string), "held until an operator approves") {
		t.Error("ticket text does not say the bundle is held")
	}
	var comments []fakeHit
	for _, h := range hits {
		if h.Path == "ticket/1/comment" {
			comments = append(comments, h)
		}
	}
	if len(comments) != 4 {
		t.Fatalf("%d comments, want 4 (updated, approved, reopened, closed)", len(comments))
	}
	if _, ok := comments[0].Body["Attachments"]; ok || comments[0].Body["Status"] != nil {
		t.Errorf("case.updated comment %v: no attachment, no status change", comments[0].Body)
	}
	if att, _ := comments[1].Body["Attachments"].([]any); len(att) != 1 {
		t.Errorf("case.approved comment carries attachments %v, want the bundle", comments[1].Body["Attachments"])
	}
	if att, _ := comments[2].Body["Attachments"].([]any); len(att) != 1 {
		t.Errorf("case.reopened comment carries attachments %v, want its bundle", comments[2].Body["Attachments"])
	}
	if comments[3].Body["Status"] != "resolved" {
		t.Errorf("case.closed comment %v does not resolve", comments[3].Body)
	}
}

// TestDuplicatesResolvedLowestWins: two active tickets for one key (two
// agents raced): the event goes to the lowest, the other is resolved.
func TestDuplicatesResolvedLowestWins(t *testing.T) {
	t.Parallel()
	f := newFakeRT(t)
	c := testCase("SN4", 2)
	m := message(t, rma.EventOpened, 1, c, nil, "", false)
	// Two agents both searched and found nothing: both create.
	for range 2 {
		f.create(map[string]any{"Queue": "General", "Subject": "x [hsm:" + c.DedupKey + "]"})
	}
	d := tokenDesk(t, f, nil)
	id, _, err := d.Send(context.Background(), message(t, rma.EventUpdated, 2, c, nil, "", false))
	if err != nil || id != "1" {
		t.Fatalf("Send: %q, %v; want ticket 1 (the lowest)", id, err)
	}
	_, tickets := f.snapshot()
	if tickets[0].Status == "resolved" || tickets[1].Status != "resolved" {
		t.Errorf("statuses %q, %q: want 1 open, 2 resolved as its duplicate", tickets[0].Status, tickets[1].Status)
	}
	// A resent open now finds the one open ticket and creates nothing.
	if id, _, err := d.Send(context.Background(), m); err != nil || id != "1" {
		t.Fatalf("resend: %q, %v", id, err)
	}
	if _, tickets = f.snapshot(); len(tickets) != 2 {
		t.Errorf("a resend created a ticket: %d", len(tickets))
	}
}

// TestFailuresFollowTheOutboxRule: 429 with Retry-After and 5xx retry,
// other 4xx park, 401/403 say auth/permission, and a create RT performed
// but answered 500 for is found, not repeated, by the retry.
func TestFailuresFollowTheOutboxRule(t *testing.T) {
	t.Parallel()
	c := testCase("SN5", 1)
	for _, tc := range []struct {
		name      string
		status    int
		header    http.Header
		retryable bool
		reason    desk.Reason
		says      string
	}{
		{"429", http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, true, desk.ReasonStatus429, ""},
		{"503", http.StatusServiceUnavailable, nil, true, desk.ReasonStatus5xx, ""},
		{"401", http.StatusUnauthorized, nil, false, desk.ReasonStatus4xx, "auth: RT refused the credentials"},
		{"403", http.StatusForbidden, nil, false, desk.ReasonStatus4xx, "permission: the RT user may not"},
		{"400", http.StatusBadRequest, nil, false, desk.ReasonStatus4xx, "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeRT(t)
			f.fail = func(h fakeHit, _ int) (int, http.Header, bool) {
				if h.Method == http.MethodPost {
					return tc.status, tc.header, false
				}
				return 0, nil, false
			}
			_, retryable, err := tokenDesk(t, f, nil).Send(context.Background(), message(t, rma.EventOpened, 1, c, nil, "", false))
			var e *desk.Error
			if !errors.As(err, &e) || retryable != tc.retryable || e.Reason != tc.reason || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %v, retryable %v; want reason %s, retryable %v, saying %q", err, retryable, tc.reason, tc.retryable, tc.says)
			}
			if tc.status == http.StatusTooManyRequests && e.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter %v, want 7s", e.RetryAfter)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
	t.Run("500 after create, then 200", func(t *testing.T) {
		t.Parallel()
		f := newFakeRT(t)
		f.fail = func(h fakeHit, n int) (int, http.Header, bool) {
			if h.Method == http.MethodPost && h.Path == "ticket" && n <= 2 {
				return http.StatusInternalServerError, nil, true // RT made it, then failed
			}
			return 0, nil, false
		}
		d := tokenDesk(t, f, nil)
		m := message(t, rma.EventOpened, 1, c, nil, "", false)
		if _, retryable, err := d.Send(context.Background(), m); err == nil || !retryable {
			t.Fatalf("first attempt: err %v, retryable %v; want a retryable 500", err, retryable)
		}
		id, _, err := d.Send(context.Background(), m)
		if err != nil || id != "1" {
			t.Fatalf("retry: %q, %v", id, err)
		}
		if hits, tickets := f.snapshot(); len(tickets) != 1 || count(hits, http.MethodPost, "ticket") != 1 {
			t.Errorf("%d tickets after 500 then retry (%d creates), want 1", len(tickets), count(hits, http.MethodPost, "ticket"))
		}
	})
}

// TestCloseWithoutTicket: closing a case RT has no active ticket for is a
// success that writes nothing.
func TestCloseWithoutTicket(t *testing.T) {
	t.Parallel()
	f := newFakeRT(t)
	id, _, err := tokenDesk(t, f, nil).Send(context.Background(), message(t, rma.EventClosed, 4, testCase("SN6", 3), nil, "", false))
	hits, tickets := f.snapshot()
	if err != nil || id != "" || len(tickets) != 0 || len(hits) != 1 {
		t.Errorf("id %q err %v, %d tickets, %d requests; want a search only", id, err, len(tickets), len(hits))
	}
}

// TestDeskTestSaysWhatFailed: desk test reads the queue and searches it,
// creates nothing, and names a missing queue, a missing CreateTicket right
// and an unreachable RT.
func TestDeskTestSaysWhatFailed(t *testing.T) {
	t.Parallel()
	f := newFakeRT(t)
	if _, err := desk.Test(context.Background(), tokenDesk(t, f, nil)); err != nil {
		t.Fatalf("desk test: %v", err)
	}
	hits, tickets := f.snapshot()
	if len(tickets) != 0 || len(hits) != 2 || hits[0].Path != "queue/General" || hits[1].Query != "Queue = 'General'" {
		t.Errorf("desk test requests %+v, tickets %d; want GET queue/General and a search, nothing created", hits, len(tickets))
	}
	_, err := desk.Test(context.Background(), tokenDesk(t, f, func(c *config.Desk) { c.Queue = "Vendor" }))
	if err == nil || !strings.Contains(err.Error(), `queue: RT has no queue "Vendor"`) {
		t.Errorf("missing queue: %v", err)
	}
	_, err = desk.Test(context.Background(), tokenDesk(t, f, func(c *config.Desk) { c.Queue = "ReadOnly" }))
	if err == nil || !strings.Contains(err.Error(), `permission: the RT user may not create tickets in queue "ReadOnly"`) {
		t.Errorf("queue without CreateTicket: %v", err)
	}
	f.srv.Close()
	_, err = desk.Test(context.Background(), tokenDesk(t, f, nil))
	if err == nil || !strings.Contains(err.Error(), "network:") {
		t.Errorf("RT down: %v; want a network error", err)
	}
}

// TestSecretNeverPrinted: the desk prints as its name.
func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	d := tokenDesk(t, newFakeRT(t), nil)
	for _, s := range []string{fmt.Sprint(d), fmt.Sprintf("%+v", d), fmt.Sprintf("%#v", d), fmt.Sprintf("%v", *d)} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("desk prints its token: %s", s)
		}
	}
}
