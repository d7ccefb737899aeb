// Package tickettext writes the subject and text of a case's ticket that
// the ticketing desks (zendesk, servicenow, ...) share: the event, the case's
// facts (serial, device, environment, pool impact, tier, ...) and the RMA
// request of its flow step (requested firmware, model, contract ID, the
// site's shipping details; support-model section 5).
package tickettext

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hsm-agent/hsm-agent/rma"
)

// Subject is a ticket subject: severity, device and summary.
func Subject(ev rma.DeskEvent) string {
	c := ev.Case
	if ev.Test {
		return "[TEST] " + c.Summary
	}
	return fmt.Sprintf("[hsm-agent sev %d] %s %s: %s", c.Severity, c.Device, c.Serial, c.Summary)
}

// Text is the ticket text for ev: the event, the case's facts
// (support-model section 5) and the RMA request of its flow step.
func Text(ev rma.DeskEvent) string {
	c := ev.Case
	var b strings.Builder
	if ev.Test {
		b.WriteString("TEST: sent by `hsm-agent desk test`; not a real case, nothing needs to be done.\n\n")
	}
	fmt.Fprintf(&b, "Event: %s (sequence %d)\n", ev.Event, ev.Sequence)
	if c.Description != "" {
		fmt.Fprintf(&b, "\n%s\n\n", c.Description)
	}
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	line("Case", c.ID)
	line("Dedup key", c.DedupKey)
	line("Serial", c.Serial)
	line("Device", c.Device)
	line("Fault", c.Fault)
	if c.Severity > 0 {
		line("Severity", fmt.Sprint(c.Severity))
	}
	line("Environment", c.Environment)
	line("Pool", c.Pool)
	line("Pool impact", c.Impact)
	line("Tier", c.Tier)
	line("State", string(c.State))
	line("RMA number", c.RMANumber)
	line("Tracking", c.Tracking)
	if ev.BundleNote != "" {
		line("Bundle", ev.BundleNote)
	}
	if ev.Bundle != nil && ev.Bundle.Withheld {
		line("Bundle", "withheld until an operator approves the upload")
	}
	if s := ev.Step; s != nil {
		line("Step", s.Event+" by "+s.Actor)
		line("Note", s.Note)
		writeRequest(&b, "", s.Request)
	}
	return b.String()
}

// writeRequest writes the RMA request (requested firmware, model,
// contract ID, ship_to, ...) as sorted "key: value" lines, nested maps
// with dotted keys.
func writeRequest(b *strings.Builder, prefix string, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := m[k].(type) {
		case map[string]any:
			writeRequest(b, prefix+k+".", v)
		case nil:
		default:
			fmt.Fprintf(b, "%s%s: %v\n", prefix, k, v)
		}
	}
}
