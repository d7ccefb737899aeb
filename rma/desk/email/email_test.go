package email_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/email"
)

func deskConfig(t *testing.T, r *relay, password string) config.Desk {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Desk{Name: "vendor-mail", Type: config.DeskEmail, Role: config.RoleVendor, SMTP: r.addr, TLS: config.TLSStartTLS,
		Username: r.user, PasswordFile: pw, From: "hsm-agent@site.example", To: []string{"support@vendor.example", "ops@site.example"}}
}

func newDesk(t *testing.T, cfg config.Desk, roots bool, r *relay) *email.Desk {
	t.Helper()
	o := email.Options{Version: "test"}
	if roots {
		o.RootCAs = r.roots
	}
	d, err := email.New(cfg, slog.New(slog.DiscardHandler), o)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var bundleContent = []byte("PK\x03\x04 a diagnostics bundle of hsm-7")

func event(seq int, name string) rma.DeskEvent {
	ev := rma.DeskEvent{Event: name, Sequence: seq, SentAt: "2026-03-01T12:00:00Z", Case: rma.Case{
		ID: "20260301-SN77-hardware", DedupKey: "SN77/hardware/missing", Serial: "SN77", Device: "hsm-7",
		Fault: "missing", Kind: rma.KindHardware, Severity: 1, Tier: config.TierPremiumPlus,
		Flow: rma.FlowAdvanceReplacement, State: rma.StateOpen, Environment: config.EnvProduction,
		Pool: "payments", Impact: "pool payments has 1 healthy member left (min_healthy 2)",
		Summary: "hsm-7 is missing from its slot",
		Description: "Device: hsm-7, serial SN77, model nShield Connect XC by Entrust, firmware 13.3.1\n" +
			"Contract: C-4711, tier premium-plus, expires 2030-01-31\n",
		OpenedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	}}
	if seq == 1 {
		sum := sha256.Sum256(bundleContent)
		ev.Bundle = &rma.BundleRef{Name: "bundle-SN77.zip", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(bundleContent)),
			ContentBase64: base64.StdEncoding.EncodeToString(bundleContent)}
	}
	if seq == 2 {
		ev.Step = &rma.StepRecord{Event: "confirm", Actor: "operator:alice", At: ev.Case.OpenedAt.Add(time.Hour),
			Request: map[string]any{rma.RequestFirmware: "13.4.0", rma.RequestShipTo: map[string]any{
				"address": "Data Centre 2, 1 Example Road, London", "contact": "Bob Ops", "phone": "+44 20 0000 0001", "country": "GB"}}}
	}
	return ev
}

func msg(t *testing.T, ev rma.DeskEvent) desk.Message {
	t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return desk.Message{Delivery: rma.Delivery{CaseID: ev.Case.ID, Seq: ev.Sequence, Desk: "vendor-mail"}, Body: b}
}

// parsed is one received mail, parsed.
type parsed struct {
	Header      mail.Header
	Text        string
	Attachments map[string][]byte
}

func parse(t *testing.T, data []byte) parsed {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	p := parsed{Header: m.Header, Attachments: map[string][]byte{}}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		p.Text = decodePart(t, m.Header.Get("Content-Transfer-Encoding"), m.Body)
		return p
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return p
		}
		if err != nil {
			t.Fatal(err)
		}
		body := decodePart(t, part.Header.Get("Content-Transfer-Encoding"), part)
		if name := part.FileName(); name != "" {
			p.Attachments[name] = []byte(body)
		} else {
			p.Text += body
		}
	}
}

func decodePart(t *testing.T, enc string, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	switch strings.ToLower(enc) {
	case "base64":
		out, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	return string(b)
}

// TestThreadOfThreeEvents sends three events of one case through a real
// SMTP relay with STARTTLS and AUTH PLAIN: one thread (Message-ID of the
// first, In-Reply-To and References on the others), Auto-Submitted, the
// severity in the subject, the case's details in the text, and the
// bundle attached to the first.
func TestThreadOfThreeEvents(t *testing.T) {
	t.Parallel()
	r := newRelay(t)
	d := newDesk(t, deskConfig(t, r, r.pass), true, r)
	ctx := context.Background()
	var tickets []string
	for i, name := range []string{rma.EventOpened, "case.confirmed", rma.EventClosed} {
		ticket, retry, err := d.Send(ctx, msg(t, event(i+1, name)))
		if err != nil {
			t.Fatalf("event %d: %v (retryable %v)", i+1, err, retry)
		}
		tickets = append(tickets, ticket)
	}
	root := "<hsm-case-20260301-SN77-hardware@site.example>"
	for _, tk := range tickets {
		if tk != root {
			t.Errorf("ticket %q, want the thread's root %s", tk, root)
		}
	}
	got := r.all()
	if len(got) != 3 {
		t.Fatalf("relay got %d mails, want 3", len(got))
	}
	for i, g := range got {
		if !g.TLS || g.User != r.user || g.From != "hsm-agent@site.example" || strings.Join(g.To, ",") != "support@vendor.example,ops@site.example" {
			t.Errorf("mail %d: tls %v user %q from %q to %q", i+1, g.TLS, g.User, g.From, g.To)
		}
		p := parse(t, g.Data)
		h := p.Header
		if h.Get("Auto-Submitted") != "auto-generated" {
			t.Errorf("mail %d: Auto-Submitted %q", i+1, h.Get("Auto-Submitted"))
		}
		subj, _ := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
		if !strings.Contains(subj, "[SEV1] hsm-7 is missing from its slot (hsm-7, serial SN77)") {
			t.Errorf("mail %d: subject %q", i+1, subj)
		}
		if i == 0 {
			if h.Get("Message-Id") != root || h.Get("In-Reply-To") != "" || strings.HasPrefix(subj, "Re:") {
				t.Errorf("first mail: Message-ID %q In-Reply-To %q subject %q", h.Get("Message-Id"), h.Get("In-Reply-To"), subj)
			}
			if !bytes.Equal(p.Attachments["bundle-SN77.zip"], bundleContent) {
				t.Errorf("first mail: attachments %q, want bundle-SN77.zip with the bundle", p.Attachments)
			}
			for _, want := range []string{"Serial: SN77", "Device: hsm-7", "Environment: production", "Pool impact: pool payments has 1 healthy member left",
				"Support tier: premium-plus", "model nShield Connect XC", "firmware 13.3.1", "Contract: C-4711", "Attached: the diagnostics bundle bundle-SN77.zip"} {
				if !strings.Contains(p.Text, want) {
					t.Errorf("first mail text lacks %q:\n%s", want, p.Text)
				}
			}
			continue
		}
		want := "<hsm-case-20260301-SN77-hardware." + string(rune('0'+i+1)) + "@site.example>"
		if h.Get("Message-Id") != want || h.Get("In-Reply-To") != root || h.Get("References") != root || !strings.HasPrefix(subj, "Re: ") {
			t.Errorf("mail %d: Message-ID %q (want %s) In-Reply-To %q References %q subject %q", i+1,
				h.Get("Message-Id"), want, h.Get("In-Reply-To"), h.Get("References"), subj)
		}
		if len(p.Attachments) != 0 {
			t.Errorf("mail %d has attachments %q", i+1, p.Attachments)
		}
	}
	second := parse(t, got[1].Data).Text
	for _, want := range []string{"Requested firmware: 13.4.0", "address: Data Centre 2, 1 Example Road, London", "contact: Bob Ops", "country: GB"} {
		if !strings.Contains(second, want) {
			t.Errorf("confirm mail lacks %q:\n%s", want, second)
		}
	}
}

// TestFailuresSayWhatFailed: a wrong password parks with "auth failed", no
// credentials at all is refused by the relay (auth required), an
// untrusted certificate is a TLS failure (retried), a closed port a
// network failure (retried); nothing reaches the relay.
func TestFailuresSayWhatFailed(t *testing.T) {
	t.Parallel()
	r := newRelay(t)
	ctx := context.Background()
	noAuth := deskConfig(t, r, r.pass)
	noAuth.Username, noAuth.PasswordFile = "", ""
	closed := deskConfig(t, r, r.pass)
	closed.SMTP = "127.0.0.1:1"
	for _, tc := range []struct {
		name  string
		cfg   config.Desk
		roots bool
		retry bool
		want  string
	}{
		{"wrong password", deskConfig(t, r, "wrong"), true, false, `auth failed for username "hsm-agent"`},
		{"no credentials", noAuth, true, false, "auth required"},
		{"untrusted certificate", deskConfig(t, r, r.pass), false, true, "TLS failed"},
		{"closed port", closed, true, true, "network: cannot reach the relay"},
	} {
		_, retry, err := newDesk(t, tc.cfg, tc.roots, r).Send(ctx, msg(t, event(1, rma.EventOpened)))
		if err == nil || retry != tc.retry || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: retryable %v, err %v; want retryable %v and %q", tc.name, retry, err, tc.retry, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), r.pass) {
			t.Errorf("%s: the error shows the password: %v", tc.name, err)
		}
	}
	if n := len(r.all()); n != 0 {
		t.Errorf("the relay accepted %d mails", n)
	}
}

// TestLargeBundleNamedNotAttached: a bundle over max_attachment_bytes is
// named in the text, not attached.
func TestLargeBundleNamedNotAttached(t *testing.T) {
	t.Parallel()
	r := newRelay(t)
	cfg := deskConfig(t, r, r.pass)
	cfg.MaxAttachmentBytes = 8
	if _, _, err := newDesk(t, cfg, true, r).Send(context.Background(), msg(t, event(1, rma.EventOpened))); err != nil {
		t.Fatal(err)
	}
	got := r.all()
	if len(got) != 1 {
		t.Fatalf("relay got %d mails", len(got))
	}
	p := parse(t, got[0].Data)
	if len(p.Attachments) != 0 || !strings.Contains(p.Text, "is too large to attach here (max_attachment_bytes 8)") {
		t.Errorf("attachments %q, text:\n%s", p.Attachments, p.Text)
	}
}

// TestDeskTestSendsMarkedMail: `desk test` sends one clearly marked test
// mail through the whole session (STARTTLS, auth, MAIL, RCPT, DATA).
func TestDeskTestSendsMarkedMail(t *testing.T) {
	t.Parallel()
	r := newRelay(t)
	if _, err := desk.Test(context.Background(), newDesk(t, deskConfig(t, r, r.pass), true, r)); err != nil {
		t.Fatal(err)
	}
	got := r.all()
	if len(got) != 1 || !got[0].TLS {
		t.Fatalf("relay got %+v", got)
	}
	p := parse(t, got[0].Data)
	if subj := p.Header.Get("Subject"); !strings.HasPrefix(subj, "[TEST] ") || !strings.Contains(p.Text, "THIS IS A TEST") {
		t.Errorf("subject %q text:\n%s", subj, p.Text)
	}
	_, err := desk.Test(context.Background(), newDesk(t, deskConfig(t, r, "wrong"), true, r))
	if err == nil || !strings.Contains(err.Error(), "auth failed") {
		t.Errorf("desk test with a wrong password: %v", err)
	}
}
