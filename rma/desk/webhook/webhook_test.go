package webhook_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
)

// hit is one request the test desk received.
type hit struct {
	at     time.Time
	method string
	header http.Header
	body   []byte
}

// recorder is an httptest desk that records every request and answers
// with respond(n) for the n-th request (0-based).
type recorder struct {
	mu      sync.Mutex
	hits    []hit
	respond func(n int, w http.ResponseWriter)
	srv     *httptest.Server
}

func newRecorder(t *testing.T, respond func(n int, w http.ResponseWriter)) *recorder {
	t.Helper()
	r := &recorder{respond: respond}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	n := len(r.hits)
	r.hits = append(r.hits, hit{at: time.Now(), method: req.Method, header: req.Header.Clone(), body: body})
	r.mu.Unlock()
	r.respond(n, w)
}

func (r *recorder) all() []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hit(nil), r.hits...)
}

func answer(status int, body string) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// fastHTTP is a desk timeout that a loaded machine meets.
var fastHTTP = webhook.Options{Timeout: 5 * time.Second}

func newDesk(t *testing.T, cfg config.Desk, opts webhook.Options) *webhook.Desk {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "vendor"
	}
	cfg.Type = config.DeskWebhook
	if opts.Timeout == 0 {
		opts.Timeout = fastHTTP.Timeout
	}
	d, err := webhook.New(cfg, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// message is a documented desk event for case c, event seq.
func message(t *testing.T, caseID string, seq int) desk.Message {
	t.Helper()
	ev := rma.DeskEvent{Event: rma.EventOpened, Sequence: seq, Case: rma.Case{
		ID: caseID, DedupKey: "SN1/hardware/missing", Serial: "SN1", Device: "hsm-a", Fault: "missing",
		Kind: rma.KindHardware, Severity: 1, Tier: config.TierPremiumPlus, Flow: rma.FlowAdvanceReplacement,
		State: rma.StateOpen, Environment: config.EnvProduction, Pool: "pay", Summary: "hsm-a is missing",
		OpenedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}}
	payload, _ := json.Marshal(ev)
	row := rma.Delivery{ID: 1, CaseID: caseID, Seq: seq, Desk: "vendor", IdempotencyKey: rma.IdempotencyKey(caseID, seq), Payload: payload}
	m, err := desk.NewMessage(row, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// verifyStandardWebhook checks a request per the Standard Webhooks spec,
// written from the spec and independent of the package: the three headers,
// a timestamp within 5 minutes, and one "v1,<base64>" entry of the
// space-separated webhook-signature equal (in constant time) to the
// HMAC-SHA256 of "id.timestamp.body" under the whsec_ key.
func verifyStandardWebhook(secret string, h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not unix seconds", ts)
	}
	if d := time.Since(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp %s is %v off", ts, d)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := []byte(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if ok && version == "v1" && hmac.Equal([]byte(sig), want) {
			return nil
		}
	}
	return errors.New("no matching v1 signature")
}

func newSecret(t *testing.T) (secret, file string) {
	t.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret = "whsec_" + base64.StdEncoding.EncodeToString(raw)
	file = filepath.Join(t.TempDir(), "vendor-webhook.secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret, file
}

func TestStandardSignatureKnownAnswer(t *testing.T) {
	t.Parallel()
	// The test vector of the Standard Webhooks reference libraries.
	key, err := webhook.ParseSecret(config.Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
	if err != nil {
		t.Fatal(err)
	}
	got := webhook.StandardSignature(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("StandardSignature = %s, want %s", got, want)
	}
}

func TestSendHeadersBodyAndSignatures(t *testing.T) {
	t.Parallel()
	secret, file := newSecret(t)
	rec := newRecorder(t, answer(201, `{"ticket_id": "VND-1001"}`))
	d := newDesk(t, config.Desk{URL: rec.srv.URL + "/hooks/hsm", SecretFile: file}, webhook.Options{Version: "1.2.3"})
	m := message(t, "c-20260301-0001", 1)

	ticket, retryable, err := d.Send(context.Background(), m)
	if err != nil || retryable || ticket != "VND-1001" {
		t.Fatalf("Send = %q, %v, %v; want VND-1001, false, nil", ticket, retryable, err)
	}
	hits := rec.all()
	if len(hits) != 1 {
		t.Fatalf("desk got %d requests, want 1", len(hits))
	}
	h := hits[0]
	if h.method != http.MethodPost {
		t.Errorf("method %s, want POST", h.method)
	}
	if !bytes.Equal(h.body, m.Body) {
		t.Errorf("desk got body %s, want the message body %s", h.body, m.Body)
	}
	for name, want := range map[string]string{
		"Content-Type":    "application/json",
		"Idempotency-Key": "c-20260301-0001:1",
		"User-Agent":      "hsm-agent/1.2.3",
		"webhook-id":      "c-20260301-0001:1",
	} {
		if got := h.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if err := verifyStandardWebhook(secret, h.header, h.body); err != nil {
		t.Errorf("Standard Webhooks signature does not verify: %v", err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	mac := hmac.New(sha256.New, key)
	mac.Write(h.body)
	if got, want := h.header.Get("X-Hsm-Agent-Signature"), "sha256="+hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("X-Hsm-Agent-Signature = %q, want %q", got, want)
	}
	// A tampered body must not verify: the check above can fail.
	if verifyStandardWebhook(secret, h.header, append([]byte(" "), h.body...)) == nil {
		t.Error("a tampered body verified")
	}
}

func TestSendWithoutSecretIsUnsigned(t *testing.T) {
	t.Parallel()
	rec := newRecorder(t, answer(200, `{}`))
	d := newDesk(t, config.Desk{URL: rec.srv.URL}, webhook.Options{})
	if d.Signed() {
		t.Error("a desk without secret_file says it signs")
	}
	ticket, _, err := d.Send(context.Background(), message(t, "c1", 2))
	if err != nil || ticket != "" {
		t.Fatalf("Send = %q, %v; want no ticket, nil", ticket, err)
	}
	h := rec.all()[0].header
	for _, name := range []string{"webhook-id", "webhook-timestamp", "webhook-signature", "X-Hsm-Agent-Signature"} {
		if h.Get(name) != "" {
			t.Errorf("unsigned desk sent %s", name)
		}
	}
	if h.Get("Idempotency-Key") != "c1:2" || h.Get("User-Agent") != "hsm-agent/dev" {
		t.Errorf("Idempotency-Key %q, User-Agent %q", h.Get("Idempotency-Key"), h.Get("User-Agent"))
	}
}

func TestRawSecretSignsWithItsBytes(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "s")
	const secret = "plain-shared-secret-of-32-bytes!"
	if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder(t, answer(200, ``))
	d := newDesk(t, config.Desk{URL: rec.srv.URL, SecretFile: file}, webhook.Options{})
	if _, _, err := d.Send(context.Background(), message(t, "c1", 1)); err != nil {
		t.Fatal(err)
	}
	h := rec.all()[0]
	// A raw secret is the key itself: verify as whsec_ of its base64.
	if err := verifyStandardWebhook("whsec_"+base64.StdEncoding.EncodeToString([]byte(secret)), h.header, h.body); err != nil {
		t.Error(err)
	}
}

// TestSignatureTimestampFromClock: webhook-timestamp is the try's time by
// Options.Now (the desk's clock), and the signature covers it.
func TestSignatureTimestampFromClock(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "s")
	const secret = "plain-shared-secret-of-32-bytes!"
	if err := os.WriteFile(file, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := newRecorder(t, answer(200, ``))
	h := fastHTTP
	h.Now = func() time.Time { return at }
	d := newDesk(t, config.Desk{URL: rec.srv.URL, SecretFile: file}, h)
	if _, _, err := d.Send(context.Background(), message(t, "c1", 1)); err != nil {
		t.Fatal(err)
	}
	hit := rec.all()[0]
	ts := hit.header.Get("webhook-timestamp")
	if want := strconv.FormatInt(at.Unix(), 10); ts != want {
		t.Fatalf("webhook-timestamp %q, want %q (the desk's clock)", ts, want)
	}
	if got, want := hit.header.Get("webhook-signature"), webhook.StandardSignature([]byte(secret), "c1:1", ts, hit.body); got != want {
		t.Errorf("webhook-signature %q, want %q", got, want)
	}
}

// TestSecretFromCredentialsDirectory: systemd's LoadCredential wins over
// the file, under the name the unit's LoadCredential gives it
// (desk_<name>.secret), and the log says which was used.
func TestSecretFromCredentialsDirectory(t *testing.T) {
	credDir := t.TempDir()
	_, fileSecret := newSecret(t)
	credSecret, credFile := newSecret(t)
	if err := os.Rename(credFile, filepath.Join(credDir, "desk_vendor.secret")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	var logs bytes.Buffer
	rec := newRecorder(t, answer(200, ``))
	d, err := webhook.New(config.Desk{Name: "vendor", Type: config.DeskWebhook, URL: rec.srv.URL, SecretFile: fileSecret},
		slog.New(slog.NewTextHandler(&logs, nil)), fastHTTP)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Send(context.Background(), message(t, "c1", 1)); err != nil {
		t.Fatal(err)
	}
	h := rec.all()[0]
	if err := verifyStandardWebhook(credSecret, h.header, h.body); err != nil {
		t.Errorf("not signed with the credential: %v", err)
	}
	if !strings.Contains(logs.String(), "source=credential") {
		t.Errorf("log does not say the credential was used: %s", logs.String())
	}
	if strings.Contains(logs.String(), strings.TrimPrefix(credSecret, "whsec_")) {
		t.Error("log shows the secret")
	}
}

func TestSecretNeverPrintedOrInErrors(t *testing.T) {
	t.Parallel()
	secret, file := newSecret(t)
	var logs bytes.Buffer
	rec := newRecorder(t, answer(400, `{"error":"bad field"}`))
	d, err := webhook.New(config.Desk{Name: "vendor", Type: config.DeskWebhook, URL: rec.srv.URL, SecretFile: file},
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), fastHTTP)
	if err != nil {
		t.Fatal(err)
	}
	_, _, sendErr := d.Send(context.Background(), message(t, "c1", 1))
	key := strings.TrimPrefix(secret, "whsec_")
	rawKey, _ := base64.StdEncoding.DecodeString(key)
	printed := fmt.Sprintf("%v %+v %#v %s %q %x", d, d, d, d, d, d) + fmt.Sprintf("%v %+v %#v", *d, *d, *d) + sendErr.Error() + logs.String()
	for _, leak := range []string{key, string(rawKey), hex.EncodeToString(rawKey), fmt.Sprint(rawKey)} {
		if strings.Contains(printed, leak) {
			t.Fatalf("the secret shows in %q", printed)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("whsec_not*base64!secretvalue"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = webhook.New(config.Desk{Name: "vendor", Type: config.DeskWebhook, URL: rec.srv.URL, SecretFile: bad}, nil, webhook.Options{})
	if err == nil || strings.Contains(err.Error(), "secretvalue") || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad whsec_ secret: error %v should name the file and not show the secret", err)
	}
	_, err = webhook.New(config.Desk{Name: "vendor", Type: config.DeskWebhook, URL: rec.srv.URL, SecretFile: filepath.Join(t.TempDir(), "absent")}, nil, webhook.Options{})
	if err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("missing secret file: error %v should name it", err)
	}
}

// TestSendMakesOneRequest: the desk answers 500 three times then 200. Each
// Send is exactly one request (the outbox worker owns the retries): three
// retryable status_5xx failures, then the ticket; the same Idempotency-Key
// and webhook-id on all four, each validly signed.
func TestSendMakesOneRequest(t *testing.T) {
	t.Parallel()
	secret, file := newSecret(t)
	rec := newRecorder(t, func(n int, w http.ResponseWriter) {
		if n < 3 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, `{"ticket_id":"T-42"}`)
	})
	d := newDesk(t, config.Desk{URL: rec.srv.URL, SecretFile: file}, webhook.Options{})
	for i := range 3 {
		_, retryable, err := d.Send(context.Background(), message(t, "c7", 3))
		if !retryable || desk.ReasonOf(err) != desk.ReasonStatus5xx {
			t.Fatalf("Send %d: retryable %v, err %v; want a retryable status_5xx", i+1, retryable, err)
		}
		if n := len(rec.all()); n != i+1 {
			t.Fatalf("after Send %d the desk got %d requests; want exactly one per Send", i+1, n)
		}
	}
	ticket, _, err := d.Send(context.Background(), message(t, "c7", 3))
	if err != nil || ticket != "T-42" {
		t.Fatalf("Send 4 = %q, %v; want T-42, nil", ticket, err)
	}
	hits := rec.all()
	if len(hits) != 4 {
		t.Fatalf("desk got %d requests, want 4", len(hits))
	}
	for i, h := range hits {
		if h.header.Get("Idempotency-Key") != "c7:3" || h.header.Get("webhook-id") != "c7:3" {
			t.Errorf("try %d: Idempotency-Key %q webhook-id %q, want c7:3", i, h.header.Get("Idempotency-Key"), h.header.Get("webhook-id"))
		}
		if err := verifyStandardWebhook(secret, h.header, h.body); err != nil {
			t.Errorf("try %d: %v", i, err)
		}
		if !bytes.Equal(h.body, hits[0].body) {
			t.Errorf("try %d sent another body", i)
		}
	}
}

// TestRetryAfterGoesBackToTheWorker: 429 or 503 with a Retry-After (short
// or a day long) ends Send after one request; the wait goes back in the
// error as the desk asked for it (the outbox worker caps it).
func TestRetryAfterGoesBackToTheWorker(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		header string
		reason desk.Reason
		want   time.Duration
	}{
		{http.StatusTooManyRequests, "2", desk.ReasonStatus429, 2 * time.Second},
		{http.StatusServiceUnavailable, "86400", desk.ReasonStatus5xx, 24 * time.Hour},
	} {
		rec := newRecorder(t, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Retry-After", tc.header)
			w.WriteHeader(tc.status)
		})
		d := newDesk(t, config.Desk{URL: rec.srv.URL}, webhook.Options{})
		_, retryable, err := d.Send(context.Background(), message(t, "c1", 1))
		var de *desk.Error
		if !retryable || !errors.As(err, &de) || de.Reason != tc.reason || de.Status != tc.status || de.RetryAfter != tc.want {
			t.Errorf("%d Retry-After %s: retryable %v, err %#v; want retryable %s with RetryAfter %v", tc.status, tc.header, retryable, err, tc.reason, tc.want)
		}
		if n := len(rec.all()); n != 1 {
			t.Errorf("%d Retry-After %s: desk got %d requests, want 1", tc.status, tc.header, n)
		}
	}
}

func TestClientErrorIsFinal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status int
		reason desk.Reason
	}{{400, desk.ReasonStatus4xx}, {401, desk.ReasonStatus4xx}, {404, desk.ReasonStatus4xx}, {422, desk.ReasonStatus4xx}, {302, desk.ReasonBadResponse}} {
		rec := newRecorder(t, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Location", "https://elsewhere.example/")
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, `{"error":"field severity is required"}`)
		})
		d := newDesk(t, config.Desk{URL: rec.srv.URL}, webhook.Options{})
		_, retryable, err := d.Send(context.Background(), message(t, "c1", 1))
		var de *desk.Error
		if retryable || !errors.As(err, &de) || de.Reason != tc.reason || de.Status != tc.status {
			t.Errorf("%d: retryable %v, err %v; want final %s", tc.status, retryable, err, tc.reason)
			continue
		}
		if n := len(rec.all()); n != 1 {
			t.Errorf("%d: desk got %d requests, want 1 (no retry, no redirect)", tc.status, n)
		}
		if tc.status == 400 && !strings.Contains(err.Error(), "field severity is required") {
			t.Errorf("error %q should quote the desk's answer", err)
		}
	}
}

func TestConnectionErrorAndTimeout(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := newDesk(t, config.Desk{URL: "http://" + addr + "/hook?token=s3cr3t"}, webhook.Options{})
	_, retryable, err := d.Send(context.Background(), message(t, "c1", 1))
	if !retryable || desk.ReasonOf(err) != desk.ReasonConnection {
		t.Errorf("desk down: retryable %v, err %v; want retryable connection", retryable, err)
	}
	if err != nil && strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q shows the URL's query", err)
	}

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	d = newDesk(t, config.Desk{URL: slow.URL, Timeout: 100 * time.Millisecond}, webhook.Options{})
	_, retryable, err = d.Send(context.Background(), message(t, "c1", 1))
	if !retryable || desk.ReasonOf(err) != desk.ReasonTimeout {
		t.Errorf("slow desk: retryable %v, err %v; want retryable timeout", retryable, err)
	}
}

func TestTicketIDForms(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		`{"ticket_id":"INC0012"}`:         "INC0012",
		`{"ticket_id": 4711}`:             "4711",
		`{"ticket_id":"  T-9\n"}`:         "T-9",
		`{"id":"x"}`:                      "",
		`accepted`:                        "",
		``:                                "",
		`{"ticket_id":null}`:              "",
		`{"ticket_id":{"nested":"no"}}`:   "",
		`[{"ticket_id":"not an object"}]`: "",
	} {
		if got := webhook.TicketID([]byte(body)); got != want {
			t.Errorf("TicketID(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestHTTPSWithTrustedRoots(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ticket_id":"TLS-1"}`)
	}))
	defer srv.Close()
	// Not trusted by the system roots: a connection error, retried later.
	d := newDesk(t, config.Desk{URL: srv.URL}, webhook.Options{})
	if _, retryable, err := d.Send(context.Background(), message(t, "c1", 1)); err == nil || !retryable {
		t.Errorf("untrusted certificate: err %v retryable %v; want a retryable error", err, retryable)
	}
	d = newDesk(t, config.Desk{URL: srv.URL}, webhook.Options{Transport: srv.Client().Transport})
	if ticket, _, err := d.Send(context.Background(), message(t, "c1", 1)); err != nil || ticket != "TLS-1" {
		t.Errorf("trusted: %q, %v", ticket, err)
	}
}

// TestProxyFromEnvironment runs in a child process, because net/http reads
// the proxy variables once per process.
func TestProxyFromEnvironment(t *testing.T) {
	if os.Getenv("HSM_AGENT_PROXY_CHILD") == "1" {
		d, err := webhook.New(config.Desk{Name: "vendor", Type: config.DeskWebhook, URL: "http://desk.invalid/hooks/hsm"}, nil, webhook.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ticket, _, err := d.Send(context.Background(), message(t, "c1", 1))
		if err != nil || ticket != "via-proxy" {
			t.Fatalf("through the proxy: %q, %v", ticket, err)
		}
		return
	}
	t.Parallel()
	var got string
	var mu sync.Mutex
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Method + " " + r.URL.String()
		mu.Unlock()
		_, _ = io.WriteString(w, `{"ticket_id":"via-proxy"}`)
	}))
	defer proxy.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyFromEnvironment$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HSM_AGENT_PROXY_CHILD=1", "HTTP_PROXY="+proxy.URL, "http_proxy="+proxy.URL, "NO_PROXY=", "no_proxy=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != "POST http://desk.invalid/hooks/hsm" {
		t.Errorf("proxy saw %q, want the POST to the desk URL", got)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x/y", "not a url", "http://"} {
		if _, err := webhook.New(config.Desk{Name: "v", Type: config.DeskWebhook, URL: u}, nil, webhook.Options{}); err == nil {
			t.Errorf("url %q accepted", u)
		}
	}
}
