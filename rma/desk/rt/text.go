package rt

import (
	"encoding/json"
	"fmt"
	"mime"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hsm-agent/hsm-agent/rma"
)

// event is a desk event with the device facts a vendor asks for, taken
// from the case (case.model, case.firmware, case.contract_id); a case
// stored before they existed has them in its description's device header.
type event struct {
	rma.DeskEvent
	Model      string
	Firmware   string
	ContractID string
}

// parseEvent reads a message body.
func parseEvent(body []byte) (event, error) {
	var ev event
	if err := json.Unmarshal(body, &ev.DeskEvent); err != nil {
		return ev, fmt.Errorf("body is not a desk event: %w", err)
	}
	ev.Model, ev.Firmware, ev.ContractID = ev.Case.Model, ev.Case.Firmware, ev.Case.ContractID
	return ev, nil
}

// subject is the ticket subject: severity, summary and the dedup tag.
func subject(ev event) string {
	return fmt.Sprintf("[S%d] %s %s", ev.Case.Severity, ev.Case.Summary, tag(ev.Case.DedupKey))
}

// orNot is v, or "not reported".
func orNot(v string) string {
	if strings.TrimSpace(v) == "" {
		return "not reported"
	}
	return v
}

// ticketText is the ticket's first message: the case and every fact
// support-model.md section 5 asks for.
func ticketText(ev event) string {
	c := ev.Case
	var b strings.Builder
	fmt.Fprintf(&b, "hsm-agent case %s (%s)\n\n%s\n", c.ID, ev.Event, c.Summary)
	if c.Description != "" {
		fmt.Fprintf(&b, "\n%s\n", c.Description)
	}
	b.WriteString("\n")
	row := func(k, v string) { fmt.Fprintf(&b, "%-20s %s\n", k+":", v) }
	row("Serial", c.Serial)
	row("Device", c.Device)
	device := func(v string) string { // the description's device header has them until the event does
		if strings.TrimSpace(v) == "" && strings.TrimSpace(c.Description) != "" {
			return "see the description above"
		}
		return orNot(v)
	}
	row("Model", device(ev.Model))
	row("Firmware", device(ev.Firmware))
	row("Environment", orNot(c.Environment))
	row("Severity", strconv.Itoa(c.Severity))
	row("Pool impact", orNot(strings.TrimSpace(c.Pool+" "+c.Impact)))
	row("Tier", orNot(c.Tier))
	row("Contract ID", device(ev.ContractID))
	row("Fault", string(c.Kind)+"/"+c.Fault)
	row("Flow", string(c.Flow))
	row("Opened", c.OpenedAt.UTC().Format("2006-01-02 15:04:05Z"))
	row("Dedup key", c.DedupKey)
	writeRequest(&b, row, ev)
	writeBundle(&b, ev)
	return b.String()
}

// writeRequest adds the RMA request's requested firmware and shipping
// details (the confirm and authorize steps carry them).
func writeRequest(b *strings.Builder, row func(k, v string), ev event) {
	var req map[string]any
	if ev.Step != nil {
		req = ev.Step.Request
	}
	fw, _ := req[rma.RequestFirmware].(string)
	row("Requested firmware", orNot(fw))
	ship, _ := req[rma.RequestShipTo].(map[string]any)
	if len(ship) == 0 {
		row("Ship to", "not reported (the RMA request carries it)")
	} else {
		keys := make([]string, 0, len(ship))
		for k := range ship {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("Ship to "+k, fmt.Sprint(ship[k]))
		}
	}
	if missing, ok := req[rma.RequestMissing].([]any); ok && len(missing) > 0 {
		row("Missing", fmt.Sprint(missing...))
	}
}

// writeBundle says what became of the diagnostics bundle.
func writeBundle(b *strings.Builder, ev event) {
	switch {
	case ev.Bundle == nil && ev.BundleNote != "":
		fmt.Fprintf(b, "\nDiagnostics bundle: %s\n", ev.BundleNote)
	case ev.Bundle == nil:
	case ev.Bundle.Withheld:
		fmt.Fprintf(b, "\nDiagnostics bundle %s (%d bytes, sha256 %s) is held until an operator approves its upload.\n",
			ev.Bundle.Name, ev.Bundle.Size, ev.Bundle.SHA256)
	default:
		fmt.Fprintf(b, "\nDiagnostics bundle attached: %s (%d bytes, sha256 %s)\n", ev.Bundle.Name, ev.Bundle.Size, ev.Bundle.SHA256)
	}
}

// commentText is a later event on the ticket.
func commentText(ev event) string {
	c := ev.Case
	var b strings.Builder
	fmt.Fprintf(&b, "hsm-agent case %s: %s (event %d)\n\nState: %s\n", c.ID, ev.Event, ev.Sequence, c.State)
	if s := ev.Step; s != nil {
		fmt.Fprintf(&b, "Step: %s by %s at %s\n", s.Event, s.Actor, s.At.UTC().Format("2006-01-02 15:04:05Z"))
		for _, kv := range [][2]string{{"RMA", s.RMA}, {"Tracking", s.Tracking}, {"Attest", s.Attest}, {"Note", s.Note}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
			}
		}
		if s.Request != nil {
			writeRequest(&b, func(k, v string) { fmt.Fprintf(&b, "%-20s %s\n", k+":", v) }, ev)
		}
	}
	if c.Occurrences > 0 {
		fmt.Fprintf(&b, "Occurrences: %d\n", c.Occurrences)
	}
	if !c.ClearedAt.IsZero() {
		fmt.Fprintf(&b, "Cleared at: %s\n", c.ClearedAt.UTC().Format("2006-01-02 15:04:05Z"))
	}
	if ev.Page != nil {
		fmt.Fprintf(&b, "Page: %s (call %s, vendor reference %s)\n", ev.Page.Text, ev.Page.Phone, ev.Page.VendorRef)
	}
	if bringsBundle(ev.Event) {
		writeBundle(&b, ev)
	}
	return b.String()
}

// bringsBundle reports whether event brings a bundle the ticket does not
// have yet (approved for upload, written late, or taken at a reopening).
func bringsBundle(event string) bool {
	return event == rma.EventBundleApproved || event == rma.EventBundleAdded || event == rma.EventReopened
}

// attachments is the REST2 Attachments list of ev's bundle; nil without
// content or while withheld.
func attachments(ev event) []map[string]string {
	b := ev.Bundle
	if b == nil || b.Withheld || b.ContentBase64 == "" {
		return nil
	}
	typ := mime.TypeByExtension(filepath.Ext(b.Name))
	if typ == "" || strings.HasSuffix(b.Name, ".gz") {
		typ = "application/gzip"
		if !strings.HasSuffix(b.Name, ".gz") {
			typ = "application/octet-stream"
		}
	}
	return []map[string]string{{"FileName": b.Name, "FileType": typ, "FileContent": b.ContentBase64}}
}
