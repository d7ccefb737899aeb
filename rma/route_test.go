package rma_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/rma"
)

func loginSignFails(d *collector.DeviceStatus, ckr string) {
	d.State, d.Kind, d.Reason = collector.StateFailed, collector.KindOperational, "check login_sign failed: "+ckr
	d.Checks[3].OK, d.Checks[3].Error = false, ckr
	d.Token.Checks = d.Checks
}

func pinLockedDev(d *collector.DeviceStatus) {
	loginSignFails(d, "CKR_PIN_LOCKED")
	d.Token.Flags = append(d.Token.Flags, p11.FlagUserPINLocked)
}

func loginRefusedDev(d *collector.DeviceStatus) { loginSignFails(d, "CKR_PIN_INCORRECT") }

func moduleErrorDev(d *collector.DeviceStatus) {
	d.State, d.Kind, d.Reported, d.Checks = collector.StateModuleError, collector.KindOperational, false, nil
	d.Reason = "module soft: worker crashed (check random); the other tokens were probed in a fresh worker"
}

func moduleWideDev(d *collector.DeviceStatus) {
	moduleErrorDev(d)
	d.ModuleWide, d.Reason = true, "module soft: C_Initialize: CKR_GENERAL_ERROR"
}

// TestEngineOperationalFaultsNeverReachVendor: a PIN locked, a refused
// login and a module error are in house, even on a production device with
// an active premium-plus contract and a vendor desk configured: no row of
// any of their events goes to the vendor desk, and their page names no
// vendor phone.
func TestEngineOperationalFaultsNeverReachVendor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault fault
		key   string
	}{
		{"pin locked", pinLockedDev, "P1/operational/pin_locked"},
		{"login refused", loginRefusedDev, "P1/operational/login_refused"},
		{"module error", moduleErrorDev, "P1/operational/module_error"},
		{"module-wide error", moduleWideDev, rma.ModuleSerial("soft") + "/operational/module_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, testConfig("pay-1"))
			h.confirm(map[string]fault{"pay-1": tc.fault})
			c := h.only(tc.key)
			if c.Kind != rma.KindOperational || c.Flow != rma.FlowNone {
				t.Errorf("case kind %s flow %s, want operational with no flow", c.Kind, c.Flow)
			}
			h.e.CheckPagesNow()
			h.poll(true, nil) // cleared
			c = h.only(tc.key)
			if _, err := h.e.CloseCase(t.Context(), c.ID, rma.Action{Actor: "operator:test"}); err != nil {
				t.Fatal(err)
			}
			rows := h.rows(c.ID)
			internal := false
			for _, r := range rows {
				if strings.HasPrefix(r, "vendor:") {
					t.Fatalf("an operational case reached the vendor desk: rows %q", rows)
				}
				internal = internal || r == "ops:"+rma.EventOpened
			}
			if !internal {
				t.Errorf("rows %q: the internal desk must have the case", rows)
			}
			if c.Severity == rma.SeverityUrgent {
				if _, page := h.page(c.ID); page.Phone != "" || strings.Contains(page.Text, "Call the vendor") {
					t.Errorf("the page of an operational case sends the on-call to the vendor: %+v", page)
				}
			}
		})
	}
}

// TestPagerGetsTheCloseOfItsPage: a pager that paged for a case gets the
// case's close (a pager desk resolves its alert on it); a pager that did
// not page for it gets nothing.
func TestPagerGetsTheCloseOfItsPage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault fault
		key   string
	}{
		{"paged", moduleErrorDev, "P1/operational/module_error"},
		{"not paged", loginRefusedDev, "P1/operational/login_refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, testConfig("pay-1"))
			h.confirm(map[string]fault{"pay-1": tc.fault})
			h.e.CheckPagesNow()
			c := h.only(tc.key)
			if _, err := h.e.CloseCase(t.Context(), c.ID, rma.Action{Actor: "operator:test"}); err != nil {
				t.Fatal(err)
			}
			var pager []string
			for _, r := range h.rows(c.ID) {
				if strings.HasPrefix(r, "pager:") {
					pager = append(pager, r)
				}
			}
			want := []string(nil)
			if tc.name == "paged" {
				want = []string{"pager:" + rma.EventPage, "pager:" + rma.EventClosed}
			}
			if fmt.Sprint(pager) != fmt.Sprint(want) {
				t.Errorf("pager rows %q, want %q", pager, want)
			}
		})
	}
}
