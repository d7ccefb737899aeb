package webhook_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
)

// TestUnusable2xxAnswerKeepsTheDelivery: a 2xx whose body is malformed
// JSON, has a ticket_id of the wrong type, or is larger than 1 MiB: the
// desk has the event, so Send succeeds (no retry, no duplicate), and a
// warning says the ticket ID was lost, naming the case and key.
func TestUnusable2xxAnswerKeepsTheDelivery(t *testing.T) {
	t.Parallel()
	huge := `{"ticket_id":"T-1","pad":"` + strings.Repeat("x", 2<<20) + `"}`
	for name, body := range map[string]string{
		"malformed":      `{"ticket_id": "T-1`,
		"wrong type":     `{"ticket_id": ["T-1"]}`,
		"oversized 2MiB": huge,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder(t, answer(http.StatusCreated, body))
			var logs bytes.Buffer
			d, err := webhook.New(config.Desk{Name: "vendor", Type: config.DeskWebhook, URL: rec.srv.URL},
				slog.New(slog.NewTextHandler(&logs, nil)), fastHTTP)
			if err != nil {
				t.Fatal(err)
			}
			ticket, retryable, err := d.Send(context.Background(), message(t, "c1", 1))
			if err != nil || retryable || ticket != "" {
				t.Fatalf("Send = %q, %v, %v; want a delivery without ticket", ticket, retryable, err)
			}
			if n := len(rec.all()); n != 1 {
				t.Errorf("desk got %d requests, want 1", n)
			}
			out := logs.String()
			if !strings.Contains(out, "ticket ID is lost") || !strings.Contains(out, "idempotency_key=c1:1") ||
				!strings.Contains(out, "desk=vendor") {
				t.Errorf("want one warning that the ticket ID was lost, naming desk and key; logs:\n%s", out)
			}
		})
	}
	// A plain 2xx without ticket (some desks give none) is not a warning.
	rec := newRecorder(t, answer(http.StatusOK, "accepted"))
	var logs bytes.Buffer
	d, err := webhook.New(config.Desk{Name: "vendor", Type: config.DeskWebhook, URL: rec.srv.URL},
		slog.New(slog.NewTextHandler(&logs, nil)), fastHTTP)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Send(context.Background(), message(t, "c1", 1)); err != nil || logs.Len() != 0 {
		t.Errorf("plain 200: err %v, logs %q; want success and no warning", err, logs.String())
	}
}

// TestRedirectIsReportedWithItsLocation: a 301/307/308 is not followed
// (the moved-to server gets nothing), is not retried, and the error says
// where it points, redacted like every desk URL (config.RedactURL: scheme
// and host; tokens hide in paths and queries).
func TestRedirectIsReportedWithItsLocation(t *testing.T) {
	t.Parallel()
	target := newRecorder(t, answer(http.StatusOK, `{"ticket_id":"WRONG"}`))
	for _, status := range []int{http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		rec := newRecorder(t, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Location", target.srv.URL+"/new/hook?sig=s3cr3t-token")
			w.WriteHeader(status)
		})
		d := newDesk(t, config.Desk{URL: rec.srv.URL}, webhook.Options{})
		_, retryable, err := d.Send(context.Background(), message(t, "c1", 1))
		if err == nil || retryable || desk.ReasonOf(err) != desk.ReasonBadResponse {
			t.Fatalf("HTTP %d: retryable %v, err %v; want a parked bad_response", status, retryable, err)
		}
		if !strings.Contains(err.Error(), "redirecting to "+target.srv.URL+" (not followed") ||
			!strings.Contains(err.Error(), "desks[].url") {
			t.Errorf("HTTP %d: error %q should say where the redirect points and what to fix", status, err)
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "/new/hook") {
			t.Errorf("HTTP %d: error %q leaks the Location's path or query (desk URLs leave as scheme and host)", status, err)
		}
		if n := len(rec.all()); n != 1 {
			t.Errorf("HTTP %d: desk got %d requests, want 1 (no retry)", status, n)
		}
	}
	if n := len(target.all()); n != 0 {
		t.Errorf("the redirect target got %d requests; a POST must not be re-sent there", n)
	}
}

// TestRequestTimeout408Retries: 408 is retryable (by the worker), with
// reason timeout.
func TestRequestTimeout408Retries(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t, func(n int, w http.ResponseWriter) {
		if n == 0 {
			w.WriteHeader(http.StatusRequestTimeout)
			return
		}
		answer(http.StatusOK, `{"ticket_id":"T-408"}`)(n, w)
	})
	d := newDesk(t, config.Desk{URL: rec.srv.URL}, webhook.Options{})
	_, retryable, err := d.Send(context.Background(), message(t, "c1", 1))
	if err == nil || !retryable || desk.ReasonOf(err) != desk.ReasonTimeout {
		t.Fatalf("408: retryable %v, err %v; want a retryable timeout", retryable, err)
	}
	ticket, _, err := d.Send(context.Background(), message(t, "c1", 1))
	if err != nil || ticket != "T-408" {
		t.Errorf("second attempt: %q, %v", ticket, err)
	}
}
