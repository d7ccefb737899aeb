package rma

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// Keys of Case.Due.
const (
	// DueResponse is the initial-response target of the case's severity
	// (support-model.md section 3), in wall time.
	DueResponse = "response"
	// DuePage is set while a severity-1 page is pending: it is sent when the
	// vendor desk returns its ticket ID, or at this time without it.
	DuePage = "page"
	// DueBundle is set while the case owes its desks the diagnostics
	// bundle that could not be written when it went out (e.g. a full
	// disk): from this time the engine tries again and sends it in a
	// case.bundle event.
	DueBundle = "bundle"
)

// Actors of the case log besides "operator:USER" and "desk:NAME".
const ActorAgent = "agent"

// OperatorActor is the actor of an operator action: "operator:USER", or
// "operator" when the user is unknown.
func OperatorActor(user string) string {
	if user == "" {
		return "operator"
	}
	return "operator:" + user
}

// FlowFor is the hardware return flow of a contract tier (support-model.md
// section 1): advance replacement for premium-plus and premium, return and
// repair for standard, none otherwise.
func FlowFor(tier string) Flow {
	switch tier {
	case config.TierPremiumPlus, config.TierPremium:
		return FlowAdvanceReplacement
	case config.TierStandard:
		return FlowReturnAndRepair
	}
	return FlowNone
}

// vendorKind reports whether a vendor desk may take cases of the kind.
func vendorKind(k Kind) bool { return k == KindHardware || k == KindFirmware }

// applyPolicy sets what follows from the case's kind, severity, the
// device's contract and the desks: Flow, Reason, the response clock, the
// vendor due dates (sla.go) and a pending page (paging.go pages). It is
// used at open and at reopen.
func applyPolicy(pol Policy, c *Case, inv config.Device, now time.Time, pageFallback time.Duration) {
	cs := Contract(inv, now)
	c.Flow, c.Reason = FlowNone, ""
	if vendorKind(c.Kind) {
		switch {
		case !cs.Active:
			c.Reason = cs.Reason
		case len(pol.desksWithRole(config.RoleVendor)) == 0:
			c.Reason = "no desk with role vendor is configured: no vendor case"
		}
		if c.Kind == KindHardware && cs.Active {
			c.Flow = FlowFor(inv.Contract.Tier)
		}
	}
	if c.Due == nil {
		c.Due = map[string]time.Time{}
	}
	c.Due[DueResponse] = now.Add(ResponseTarget(c.Severity))
	opened := readLog(pol, *c, nil).in
	opened.OpenedAt = now
	c.Due, _ = withDue(c.Due, DueDates(opened, pol.calendar(inv.Contract.Region)))
	delete(c.Due, DuePage)
	if pages(pol, *c, inv, now) && len(pol.desksWithRole(config.RolePager)) > 0 {
		if vendorTakes(*c) {
			c.Due[DuePage] = now.Add(pageFallback)
		} else {
			c.Due[DuePage] = now
		}
	}
}

// vendorTakes reports whether the vendor desks get the case: a hardware or
// firmware case whose contract is active (applyPolicy left no Reason).
func vendorTakes(c Case) bool { return vendorKind(c.Kind) && c.Reason == "" }

// targets lists the desks that get one event of a case, one outbox row
// each: pagers get pages, and the close or cancel of a case they paged
// for (so a pager resolves its alert); internal desks get every other event;
// vendor desks get the opening (and reopening) of a case they can take,
// and later events of cases they already have (have: desks with rows).
func targets(pol Policy, c Case, evType string, have map[string]bool) []Desk {
	var out []Desk
	for _, d := range pol.Desks {
		ok := false
		switch d.Role {
		case config.RolePager:
			ok = evType == EventPage || (have[d.Name] && (evType == EventClosed || evType == EventCancelled))
		case config.RoleInternal:
			ok = evType != EventPage
		case config.RoleVendor:
			switch evType {
			case EventPage:
			case EventOpened, EventReopened:
				ok = vendorTakes(c)
			default:
				ok = have[d.Name]
			}
		}
		if ok {
			out = append(out, d)
		}
	}
	return out
}

// outbox builds the outbox rows of one event: the desk payload (design.md
// "Webhook desk event", without sent_at and bundle content, which the desk
// worker adds) and the bundle to attach, withheld from desks with upload:
// approve until an operator approves it. c is the case as it will be after
// the event (Seq already the event's).
func outbox(desks []Desk, c Case, evType string, page *Page, bundle string, at time.Time) ([]Delivery, error) {
	return outboxNoting(desks, c, evType, page, bundle, "", at)
}

// outboxNoting is outbox with a BundleNote for the desks that should have
// had a bundle (every desk but pagers): why it is missing.
func outboxNoting(desks []Desk, c Case, evType string, page *Page, bundle, note string, at time.Time) ([]Delivery, error) {
	var out []Delivery
	for _, d := range desks {
		ev := DeskEvent{Event: evType, Sequence: c.Seq, Case: c, Page: page}
		if d.Role != config.RolePager {
			ev.BundleNote = note
		}
		p, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("encode %s event for desk %s: %w", evType, d.Name, err)
		}
		row := Delivery{Desk: d.Name, Payload: p, NextAttempt: at}
		if bundle != "" && d.Role != config.RolePager {
			row.BundlePath = bundle
			row.WithholdBundle = d.ApproveUpload && !c.BundleApproved
		}
		out = append(out, row)
	}
	return out, nil
}

// after is the case as a Transition will store it: the next sequence and
// the event's time.
func after(c Case, at time.Time) Case {
	c.Seq++
	c.UpdatedAt = at
	return c
}

// eventData encodes an event's details.
func eventData(v map[string]any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
