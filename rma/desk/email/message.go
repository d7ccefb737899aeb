package email

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"

	gomail "github.com/wneessen/go-mail"

	"github.com/hsm-agent/hsm-agent/rma"
)

// Header names the email desk sets beyond the standard ones.
const (
	HeaderAutoSubmitted = "Auto-Submitted"
	HeaderCase          = "X-Hsm-Case"
	HeaderEvent         = "X-Hsm-Event"
)

// threadID is the Message-ID (without angle brackets) of a case's first
// message: the root of its thread.
func (d *Desk) threadID(caseID string) string {
	return "hsm-case-" + safeID(caseID) + "@" + d.domain
}

// messageID is the Message-ID of event seq of a case: the thread's root
// for the first event, the root with the sequence after it otherwise.
func (d *Desk) messageID(ev rma.DeskEvent) string {
	if first(ev) {
		return d.threadID(ev.Case.ID)
	}
	return fmt.Sprintf("hsm-case-%s.%d@%s", safeID(ev.Case.ID), ev.Sequence, d.domain)
}

// first reports whether ev starts its case's thread.
func first(ev rma.DeskEvent) bool {
	return ev.Sequence <= 1 || ev.Event == rma.EventTest
}

// safeID keeps the characters a Message-ID's left part may hold.
func safeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r) {
			return r
		}
		return '_'
	}, s)
}

// Subject is the subject line of an event: the severity first.
func Subject(ev rma.DeskEvent) string {
	c := ev.Case
	if ev.Test {
		return "[TEST] " + c.Summary
	}
	s := fmt.Sprintf("[SEV%d] %s (%s, serial %s) [hsm case %s]", c.Severity, c.Summary, c.Device, c.Serial, c.ID)
	if !first(ev) {
		s = "Re: " + s
	}
	return s
}

// message builds the e-mail of one event.
func (d *Desk) message(ev rma.DeskEvent) (*gomail.Msg, error) {
	m := gomail.NewMsg()
	if err := m.From(d.from); err != nil {
		return nil, fmt.Errorf("from %q: %w", d.from, err)
	}
	if err := m.To(d.to...); err != nil {
		return nil, fmt.Errorf("to %q: %w", d.to, err)
	}
	m.Subject(Subject(ev))
	m.SetMessageIDWithValue(d.messageID(ev))
	if !first(ev) {
		root := "<" + d.threadID(ev.Case.ID) + ">"
		m.SetGenHeader(gomail.HeaderInReplyTo, root)
		m.SetGenHeader(gomail.HeaderReferences, root)
	}
	m.SetGenHeader(HeaderAutoSubmitted, "auto-generated")
	m.SetGenHeader(HeaderCase, ev.Case.ID)
	m.SetGenHeader(HeaderEvent, ev.Event)
	m.SetUserAgent("hsm-agent/" + d.version)
	m.SetDate()
	var attach []byte
	note := ""
	if b := ev.Bundle; b != nil {
		switch {
		case b.Withheld:
			note = fmt.Sprintf("The diagnostics bundle %s (%d bytes) is held until an operator approves it; it follows then.", b.Name, b.Size)
		case b.ContentBase64 == "":
		case b.Size > d.maxAttach:
			note = fmt.Sprintf("The diagnostics bundle %s (%d bytes, sha256 %s) is too large to attach here (max_attachment_bytes %d); ask the site for it.",
				b.Name, b.Size, b.SHA256, d.maxAttach)
		default:
			content, err := base64.StdEncoding.DecodeString(b.ContentBase64)
			if err != nil {
				return nil, fmt.Errorf("bundle %s: content is not base64: %w", b.Name, err)
			}
			attach = content
			note = fmt.Sprintf("Attached: the diagnostics bundle %s (%d bytes, sha256 %s).", b.Name, b.Size, b.SHA256)
		}
	}
	m.SetBodyString(gomail.TypeTextPlain, Text(ev, note))
	if attach != nil {
		if err := m.AttachReader(ev.Bundle.Name, bytes.NewReader(attach)); err != nil {
			return nil, fmt.Errorf("attach bundle %s: %w", ev.Bundle.Name, err)
		}
	}
	return m, nil
}

// Text is the plain-text body of an event: what happened, the case's
// identity and impact, the RMA request and the bundle note.
func Text(ev rma.DeskEvent, bundleNote string) string {
	c := ev.Case
	var b strings.Builder
	if ev.Test {
		fmt.Fprintf(&b, "THIS IS A TEST sent by `hsm-agent desk test`; no device is affected and nothing needs to be done.\n\n")
	}
	fmt.Fprintf(&b, "Event: %s (sequence %d)\n", ev.Event, ev.Sequence)
	fmt.Fprintf(&b, "Case: %s, state %s, severity %d, kind %s, fault %s\n", c.ID, c.State, c.Severity, c.Kind, c.Fault)
	fmt.Fprintf(&b, "Device: %s\nSerial: %s\nEnvironment: %s\n", c.Device, c.Serial, c.Environment)
	fmt.Fprintf(&b, "Pool: %s\nPool impact: %s\n", dash(c.Pool), dash(c.Impact))
	fmt.Fprintf(&b, "Support tier: %s\nRMA flow: %s\n", dash(c.Tier), c.Flow)
	if c.RMANumber != "" {
		fmt.Fprintf(&b, "Vendor RMA: %s\n", c.RMANumber)
	}
	fmt.Fprintf(&b, "Opened: %s\n\n%s\n", c.OpenedAt.UTC().Format("2006-01-02 15:04:05Z"), c.Summary)
	if c.Description != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(c.Description, "\n"))
	}
	if s := ev.Step; s != nil {
		writeStep(&b, s)
	}
	if ev.BundleNote != "" {
		fmt.Fprintf(&b, "\n%s\n", ev.BundleNote)
	}
	if bundleNote != "" {
		fmt.Fprintf(&b, "\n%s\n", bundleNote)
	}
	return b.String()
}

// writeStep writes the flow step and its RMA request.
func writeStep(b *strings.Builder, s *rma.StepRecord) {
	fmt.Fprintf(b, "\nStep: %s by %s at %s\n", s.Event, s.Actor, s.At.UTC().Format("2006-01-02 15:04:05Z"))
	for _, kv := range [][2]string{{"RMA", s.RMA}, {"Tracking", s.Tracking}, {"Attested", s.Attest}, {"Note", s.Note}} {
		if kv[1] != "" {
			fmt.Fprintf(b, "%s: %s\n", kv[0], kv[1])
		}
	}
	if len(s.Request) == 0 {
		return
	}
	fmt.Fprintf(b, "\nRMA request\nRequested firmware: %s\n", dash(orEmpty(s.Request[rma.RequestFirmware])))
	if ship, ok := s.Request[rma.RequestShipTo].(map[string]any); ok {
		b.WriteString("Ship to:\n")
		for _, k := range []string{"address", "contact", "phone", "country"} {
			if v := orEmpty(ship[k]); v != "" {
				fmt.Fprintf(b, "  %s: %s\n", k, v)
			}
		}
	}
	if missing, ok := s.Request[rma.RequestMissing].([]any); ok && len(missing) > 0 {
		b.WriteString("Missing from the inventory:\n")
		for _, v := range missing {
			fmt.Fprintf(b, "  - %v\n", v)
		}
	}
}

func orEmpty(v any) string {
	if v == nil {
		return ""
	}
	return strings.TrimSpace(fmt.Sprint(v))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
