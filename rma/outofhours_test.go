package rma_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// webConfig is pool web (two members, so a failure is severity 2) with
// its contract's tier and region changed.
func webConfig(tier, region string) *config.Config {
	cfg := testConfig("web-1", "web-2")
	for i := range cfg.Devices {
		cfg.Devices[i].Contract.Tier, cfg.Devices[i].Contract.Region = tier, region
	}
	return cfg
}

// openAt opens the severity-2 case of web-1 at t and returns it with its
// page (nil for none) after the vendor answered with a ticket ID and the
// fallback passed.
func openAt(t *testing.T, cfg *config.Config, at time.Time) (rma.Case, *rma.Page) {
	t.Helper()
	h := newHarness(t, cfg)
	h.clock.Set(at)
	h.confirm(map[string]fault{"web-1": failedDev})
	c := h.only("W1/hardware/failed")
	if c.Severity != 2 {
		t.Fatalf("severity %d, want 2", c.Severity)
	}
	for _, d := range h.deliveries(c.ID) {
		if d.Desk == "vendor" {
			if err := h.st.RecordAttempt(context.Background(), d.ID, store.Attempt{At: h.clock.Now(), Delivered: true, Status: 201, TicketID: "V-7"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	h.e.CheckPagesNow()
	h.clock.Advance(2 * time.Minute) // past the fallback too
	h.e.CheckPagesNow()
	if count(h.rows(c.ID), "pager:"+rma.EventPage) == 0 {
		return c, nil
	}
	_, p := h.page(c.ID)
	return c, &p
}

func TestPageSeverity2OutsideOfficeHours(t *testing.T) {
	t.Parallel()
	// 05:00 in New York on a Monday: the Americas desk opens at 09:00.
	c, page := openAt(t, webConfig(config.TierPremium, config.RegionAmericas), time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	if page == nil {
		t.Fatal("no page")
	}
	text, phone := page.Text, page.Phone
	for _, part := range []string{"SEVERITY 2 " + c.ID, "outside the vendor's office hours", "+1 212 555 0100", "quote vendor case V-7"} {
		if !strings.Contains(text, part) {
			t.Errorf("page text lacks %q: %s", part, text)
		}
	}
	if phone != "+1 212 555 0100" {
		t.Errorf("phone %q", phone)
	}
}

func TestPageSeverity2InOfficeHoursDoesNotPage(t *testing.T) {
	t.Parallel()
	// 11:00 in New York on a Monday.
	if _, page := openAt(t, webConfig(config.TierPremium, config.RegionAmericas), time.Date(2026, 3, 2, 16, 0, 0, 0, time.UTC)); page != nil {
		t.Errorf("page %+v while the vendor's desk is open", page)
	}
}

func TestPageSeverity2PremiumPlusWeekend(t *testing.T) {
	t.Parallel()
	// Saturday 11:00 in London: only the premium-plus phone line answers.
	_, page := openAt(t, webConfig(config.TierPremiumPlus, config.RegionEMEA), time.Date(2026, 3, 7, 11, 0, 0, 0, time.UTC))
	if page == nil {
		t.Fatal("no page")
	}
	if !strings.Contains(page.Text, "weekend or holiday") || !strings.Contains(page.Text, "+44 20 7946 0000") {
		t.Errorf("page text %q", page.Text)
	}
}

func TestPageSeverity2HolidayFromTheConfiguredCalendar(t *testing.T) {
	t.Parallel()
	cfg := webConfig(config.TierPremium, config.RegionEMEA)
	cfg.Calendars = map[string]config.Calendar{config.RegionEMEA: {Holidays: []config.Date{date("2026-03-04")}}}
	// Wednesday 11:00 in London, a holiday in calendars.emea.
	if _, page := openAt(t, cfg, time.Date(2026, 3, 4, 11, 0, 0, 0, time.UTC)); page == nil {
		t.Error("no page on a configured holiday")
	}
}

func TestPageUsesTheNShieldProfileWithoutDeskPhones(t *testing.T) {
	t.Parallel()
	cfg := testConfig("pay-1")
	cfg.Desks[0].Phones = nil
	cfg.Devices[0].Site.Country = "AU"
	h := newHarness(t, cfg)
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	h.clock.Advance(2 * time.Minute)
	h.e.CheckPagesNow()
	_, page := h.page(c.ID)
	if page.Phone != "+61 8 9126 9070" || strings.Contains(page.Text, "no vendor phone") || !strings.Contains(page.Text, "+61 8 9126 9070") {
		t.Errorf("page %+v; want the nshield line of the site's country AU", page)
	}
}
