package rma

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// checkPages sends the pending severity-1 pages whose vendor ticket ID
// arrived or whose fallback time passed, tries again the bundles cases
// still owe their desks, and refreshes the open-case metric.
func (e *Engine) checkPages(ctx context.Context) {
	cases, err := e.st.Cases(ctx, true)
	if err != nil {
		e.logger.Error("look for pending pages", "err", err)
		return
	}
	e.m.setOpen(cases)
	pol := *e.pol.Load()
	for _, c := range cases {
		if _, ok := c.Due[DuePage]; ok {
			e.pageIfDue(ctx, pol, c)
		}
		if _, ok := c.Due[DueBundle]; ok {
			e.followBundle(ctx, pol, c)
		}
	}
}

// firstVendorDesk is the vendor desk a case's page quotes: the first of
// the configuration that has the case, else the first with phones, else
// the first.
func firstVendorDesk(pol Policy, have map[string]bool) string {
	vendors := pol.desksWithRole(config.RoleVendor)
	for _, d := range vendors {
		if have[d.Name] {
			return d.Name
		}
	}
	for _, d := range vendors {
		if len(d.Phones) > 0 {
			return d.Name
		}
	}
	if len(vendors) > 0 {
		return vendors[0].Name
	}
	return ""
}

// pageIfDue enqueues the case's pending page when the vendor desk has
// returned its ticket ID, when the fallback time has passed, or at once
// when no vendor desk has the case. Exactly one page per pending page:
// the transition removes the pending mark in the same commit.
func (e *Engine) pageIfDue(ctx context.Context, pol Policy, c Case) {
	due, ok := c.Due[DuePage]
	if !ok {
		return
	}
	have, _, err := deskSet(ctx, e.st, c.ID)
	if err != nil {
		e.logger.Error("page", "case", c.ID, "err", err)
		return
	}
	vendor := firstVendorDesk(pol, have)
	ref := ""
	if have[vendor] {
		ref = c.DeskRefs[vendor]
	}
	now := e.now()
	if have[vendor] && ref == "" && now.Before(due) {
		return // wait for the vendor's ticket ID
	}
	inv := pol.device(c.Device, c.Serial)
	page := &Page{Region: inv.Contract.Region, VendorRef: ref}
	if vendorKind(c.Kind) {
		d, _ := pol.desk(vendor)
		if line, ok := PhoneFor(d.Phones, inv.Site.Country, page.Region); ok {
			page.Phone = line.Number
		}
	}
	_, why := pageRule(pol, c, inv, c.OpenedAt)
	page.Text = pageText(c, page, have[vendor], why, inv.Site.Country)
	pagers := pol.desksWithRole(config.RolePager)
	var paged Case
	paged, err = e.st.Transition(ctx, c.ID, func(c *Case) (Event, []Delivery, error) {
		if _, ok := c.Due[DuePage]; !ok || c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		delete(c.Due, DuePage)
		rows, err := outbox(pagers, after(*c, now), EventPage, page, "", now)
		note := page.Text
		if len(pagers) == 0 {
			note = "no desk with role pager is configured: nobody was paged. " + note
		}
		return Event{Type: EventPage, At: now, Actor: ActorAgent, Note: note,
			Data: eventData(map[string]any{"phone": page.Phone, "region": page.Region, "vendor_ref": page.VendorRef})}, rows, err
	})
	if errors.Is(err, ErrNoChange) {
		return
	}
	if err != nil {
		e.logger.Error("page", "case", c.ID, "err", err)
		return
	}
	e.logger.Info("page queued", "case", paged.ID, "severity", paged.Severity, "rule", why, "device", paged.Device, "vendor_ref", ref, "pagers", len(pagers))
	e.committed(ctx, EventPage)
}

// pages reports whether a case opened (or reopened) at t pages a human:
// severity 1 always; severity 2 of a case the vendor takes when the
// vendor's desk is closed at t (PageRule, support-model.md section 7).
func pages(pol Policy, c Case, inv config.Device, t time.Time) bool {
	page, _ := pageRule(pol, c, inv, t)
	return page
}

// pageRule is PageRule for a case in its device's region; without a
// calendar (no contract) only severity 1 pages.
func pageRule(pol Policy, c Case, inv config.Device, t time.Time) (bool, string) {
	if c.Severity == SeverityUrgent {
		return PageRule(c.Severity, c.Tier, nil, t)
	}
	cal := pol.calendar(inv.Contract.Region)
	if c.Severity != SeverityHigh || cal == nil || !vendorTakes(c) {
		return false, ""
	}
	return PageRule(c.Severity, c.Tier, cal, t)
}

// pageText is what the human on call reads: what broke, its impact, why
// it pages, whom to call and which references to quote.
func pageText(c Case, p *Page, vendorHasCase bool, why, country string) string {
	s := fmt.Sprintf("SEVERITY %d %s: %s. Impact: %s.", c.Severity, c.ID, c.Summary, c.Impact)
	if c.Severity != SeverityUrgent && why != "" {
		s += " Paged because " + why + "."
	}
	phone := ""
	switch {
	case p.Phone != "":
		phone = fmt.Sprintf(" on %s (%s)", p.Phone, orUnknown(p.Region))
	case vendorKind(c.Kind):
		phone = fmt.Sprintf(" (no vendor phone line known for region %s or country %s)", orUnknown(p.Region), orUnknown(country))
	}
	switch {
	case p.VendorRef != "":
		return s + fmt.Sprintf(" Call the vendor%s and quote vendor case %s; our case ID %s.", phone, p.VendorRef, c.ID)
	case vendorHasCase:
		return s + fmt.Sprintf(" Call the vendor%s: vendor reference pending; our case ID %s.", phone, c.ID)
	case c.Reason != "":
		return s + fmt.Sprintf(" No vendor case: %s; our case ID %s.", c.Reason, c.ID)
	}
	return s + fmt.Sprintf(" In-house (%s fault, no vendor case); our case ID %s.", c.Kind, c.ID)
}
