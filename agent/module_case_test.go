package agent

import (
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// TestModuleCrashIsOneModuleCase: a module whose worker dies in
// C_GetSlotList, before any token is probed, is one module-level case at
// the internal desk (and one page: the production pool has nothing left),
// never a case per device and never a vendor ticket naming a device. When
// the module recovers, that one case clears and no device case ever opened.
func TestModuleCrashIsOneModuleCase(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 3)
	contract := "contract: {id: C-1, tier: premium-plus, expires: 2030-01-31, region: emea}"
	s.write(t, siteConfig{
		Pools: "  - {name: pool-a, min_healthy: 1}\n",
		Devices: s.device(0, "hsm-0", "environment: production, pool: pool-a, "+contract) +
			s.device(1, "hsm-1", "environment: production, pool: pool-a, "+contract) +
			s.device(2, "hsm-2", "environment: development, "+contract),
	}, testTimings)
	ra := startE2E(t, s)
	for i := range 3 {
		ra.waitHealthy(t, "hsm-"+string(rune('0'+i)))
	}

	if err := s.faults.SetModule(pkcs11test.FaultSegv, "C_GetSlotList"); err != nil {
		t.Fatal(err)
	}
	key := rma.DedupKey(rma.ModuleSerial("soft"), rma.KindOperational, rma.ClassModuleError)
	waitUntil(t, e2eWait, "the module case at the internal desk", func() bool {
		return len(where(s.desk.accepted("internal"), func(c deskCall) bool { return c.Event.Case.DedupKey == key })) > 0
	})
	// Several more polls and rechecks while the module stays down.
	ra.waitPolls(t, 5)

	cases := ra.allCases(t)
	if len(cases) != 1 {
		t.Fatalf("want exactly one case (the module's), got %d: %+v", len(cases), cases)
	}
	internal := s.desk.accepted("internal")
	if len(internal) != 1 {
		t.Fatalf("want one internal event, got:%s", describeCalls(internal))
	}
	c := internal[0].Event.Case
	if c.Serial != rma.ModuleSerial("soft") || c.Device != "module soft" || c.Kind != rma.KindOperational {
		t.Errorf("the case names a device or the wrong kind: serial %q device %q kind %s", c.Serial, c.Device, c.Kind)
	}
	if c.Severity != rma.SeverityUrgent || !strings.Contains(c.Impact, "pool pool-a: 0 of min 1") {
		t.Errorf("want severity 1 (production pool with nothing left), got %d: %s", c.Severity, c.Impact)
	}
	for _, dev := range []string{"hsm-0", "hsm-1", "hsm-2"} {
		if !strings.Contains(c.Description, dev) {
			t.Errorf("the description does not list the unprobed device %s:\n%s", dev, c.Description)
		}
	}
	if !strings.Contains(c.Description, "no device is blamed") {
		t.Errorf("the description does not say no device is blamed:\n%s", c.Description)
	}
	if v := s.desk.all("vendor"); len(v) != 0 {
		t.Errorf("an operational module fault reached the vendor desk:%s", describeCalls(v))
	}
	if p := s.desk.accepted("pager"); len(p) != 1 {
		t.Errorf("want one page for the module, got:%s", describeCalls(p))
	}

	if err := s.faults.ClearAll(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, e2eWait, "the module case cleared", func() bool {
		return len(where(s.desk.accepted("internal"), func(c deskCall) bool { return c.Event.Event == rma.EventCleared })) > 0
	})
	if cases := ra.allCases(t); len(cases) != 1 {
		t.Errorf("after recovery, want still one case, got %d: %+v", len(cases), cases)
	}
}
