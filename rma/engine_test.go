package rma_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector"
	"github.com/hsm-agent/hsm-agent/collector/health"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// start is the engine clock's start; all case times derive from it.
var start = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func date(s string) config.Date {
	d, err := config.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

// inventory is every device the tests use; each test takes the ones it names.
var inventory = map[string]config.Device{
	// Production, alone in pool payments (min 1), premium-plus, EMEA.
	"pay-1": {Name: "pay-1", Serial: "P1", Module: "soft", Environment: config.EnvProduction, Pool: "payments",
		Contract: config.Contract{ID: "C-PAY", Tier: config.TierPremiumPlus, Expires: date("2027-06-30"), Region: config.RegionEMEA}},
	// Production pool web (min 1) of two, premium, Americas.
	"web-1": {Name: "web-1", Serial: "W1", Module: "soft", Environment: config.EnvProduction, Pool: "web",
		Contract: config.Contract{ID: "C-WEB", Tier: config.TierPremium, Expires: date("2027-06-30"), Region: config.RegionAmericas}},
	"web-2": {Name: "web-2", Serial: "W2", Module: "soft", Environment: config.EnvProduction, Pool: "web",
		Contract: config.Contract{ID: "C-WEB", Tier: config.TierPremium, Expires: date("2027-06-30"), Region: config.RegionAmericas}},
	// Development, standard, APAC.
	"dev-1": {Name: "dev-1", Serial: "D1", Module: "soft", Environment: config.EnvDevelopment,
		Contract: config.Contract{ID: "C-DEV", Tier: config.TierStandard, Expires: date("2027-06-30"), Region: config.RegionAPAC}},
	// Production, contract expired on 2026-01-31.
	"old-1": {Name: "old-1", Serial: "O1", Module: "soft", Environment: config.EnvProduction,
		Contract: config.Contract{ID: "C-1", Tier: config.TierStandard, Expires: date("2026-01-31"), Region: config.RegionEMEA}},
	// Production but never commissioned.
	"new-1": {Name: "new-1", Serial: "N1", Module: "soft", Environment: config.EnvProduction, Commissioned: new(bool),
		Contract: config.Contract{ID: "C-NEW", Tier: config.TierPremiumPlus, Expires: date("2027-06-30"), Region: config.RegionEMEA}},
	// Contract expiring 90 days after start.
	"exp-1": {Name: "exp-1", Serial: "E1", Module: "soft", Environment: config.EnvProduction,
		Contract: config.Contract{ID: "C-EXP", Tier: config.TierPremium, Expires: config.Date{Time: start.AddDate(0, 0, 90)}, Region: config.RegionEMEA}},
}

func testConfig(devices ...string) *config.Config {
	c := config.Default()
	c.StateDir = "/nonexistent"
	c.RecheckInterval = time.Millisecond
	c.Modules = []config.Module{{Name: "soft", Library: "/usr/lib/softhsm/libsofthsm2.so"}}
	c.Pools = []config.Pool{{Name: "payments", MinHealthy: 1}, {Name: "web", MinHealthy: 1}}
	for _, n := range devices {
		c.Devices = append(c.Devices, inventory[n])
	}
	c.Firmware = config.Firmware{Minimum: "2.6"}
	c.Desks = []config.Desk{
		{Name: "vendor", Type: config.DeskWebhook, Role: config.RoleVendor, Upload: config.UploadApprove, URL: "https://vendor.example/hook",
			Phones: map[string]string{config.RegionEMEA: "+44 20 7946 0000", config.RegionAmericas: "+1 212 555 0100", config.RegionAPAC: "+852 5555 0000"}},
		{Name: "ops", Type: config.DeskSpool, Role: config.RoleInternal, Upload: config.UploadAuto, Dir: "/spool/ops"},
		{Name: "pager", Type: config.DeskSpool, Role: config.RolePager, Upload: config.UploadAuto, Dir: "/spool/pager"},
	}
	if err := c.Validate(); err != nil {
		panic(err)
	}
	return c
}

// harness runs an engine on a real store in a temporary directory.
type harness struct {
	t        *testing.T
	dir      string
	st       *store.Store
	cfg      *config.Config
	clock    *clock
	e        *rma.Engine
	stop     func()
	kicks    atomic.Int64
	bundles  atomic.Int64
	diskFull atomic.Bool // the bundle cannot be written (ENOSPC)
	rechecks chan string
}

func newHarness(t *testing.T, cfg *config.Config) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, dir: dir, st: st, cfg: cfg, clock: &clock{now: start}, rechecks: make(chan string, 100)}
	h.startEngine()
	return h
}

// startEngine starts a new engine on the harness's store (a restart when
// one ran before).
func (h *harness) startEngine() {
	h.t.Helper()
	e, err := rma.NewEngine(rma.PolicyFrom(h.cfg), rma.EngineOptions{
		Store:   h.st,
		Now:     h.clock.Now,
		Recheck: func(m string) { h.rechecks <- m },
		Bundle: func(_ context.Context, c rma.Case) (string, error) {
			n := h.bundles.Add(1)
			path := filepath.Join(h.dir, c.ID+"-"+string(rune('0'+n))+".tar.gz")
			if h.diskFull.Load() {
				return "", &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
			}
			return path, os.WriteFile(path, []byte("bundle of "+c.ID), 0o600)
		},
		Kick:              func() { h.kicks.Add(1) },
		PageCheckInterval: time.Hour, // the tests check pages explicitly
		AgentVersion:      "1.2.3-test",
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	h.e = e
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Run: %v", err)
			}
		})
	}
	h.t.Cleanup(h.stop)
	e.Flush() // recovery and the start-up checks are done
}

func (h *harness) restart() {
	h.stop()
	h.startEngine()
}

// fault changes a healthy device status into a faulty one.
type fault func(*collector.DeviceStatus)

func missingDev(d *collector.DeviceStatus) {
	d.State, d.Kind, d.Reported, d.Checks = collector.StateMissing, collector.KindHardware, false, nil
	d.Reason = "serial " + d.Serial + " not present in module soft (0 tokens reported)"
}

func failedDev(d *collector.DeviceStatus) {
	d.State, d.Kind, d.Reason = collector.StateFailed, collector.KindHardware, "check random failed: CKR_DEVICE_ERROR"
	d.Checks[2].OK, d.Checks[2].Error = false, "CKR_DEVICE_ERROR"
	d.Token.Checks = d.Checks
}

func oldFirmware(d *collector.DeviceStatus) { d.Token.Firmware = "2.5" }

// poll feeds one snapshot of every inventory device (healthy unless a
// fault is given for it) and waits until the engine processed it. The
// clock advances 2 s per poll.
func (h *harness) poll(fresh bool, faults map[string]fault) {
	h.t.Helper()
	h.clock.Advance(2 * time.Second)
	now := h.clock.Now()
	snap := collector.Snapshot{Time: now, Ready: true, Polled: []string{"soft"},
		Modules: []collector.ModuleStatus{{Name: "soft", Polled: true, Start: now, Fresh: fresh}}}
	for _, inv := range h.cfg.Devices {
		checks := []p11.Check{
			{Name: p11.CheckTokenInfo, OK: true, Duration: time.Millisecond},
			{Name: p11.CheckSessionOpen, OK: true, Duration: time.Millisecond},
			{Name: p11.CheckRandom, OK: true, Duration: time.Millisecond},
			{Name: p11.CheckLoginSign, OK: true, Duration: 5 * time.Millisecond},
		}
		d := collector.DeviceStatus{Device: inv.Name, Serial: inv.Serial, Module: inv.Module, State: collector.StateHealthy,
			Token: &p11.Token{Serial: inv.Serial, Label: inv.Name, Model: "SoftHSM v2", Manufacturer: "SoftHSM project",
				Firmware: "2.6", Hardware: "2.6", Flags: []string{p11.FlagTokenInitialized}, Checks: checks},
			Reported: true, Checks: checks, Fresh: fresh, Updated: now, Since: start, Inventory: inv, FirmwareCompliant: true}
		if f := faults[inv.Name]; f != nil {
			f(&d)
		}
		snap.Devices = append(snap.Devices, d)
	}
	h.e.Observe(healthOf(snap, h.cfg))
	h.e.Flush()
}

// healthOf is the poll the collector hands the engine for a snapshot: each
// device with its findings under cfg's classification policy.
func healthOf(snap collector.Snapshot, cfg *config.Config) health.Poll {
	for i := range snap.Devices {
		snap.Devices[i].Findings = collector.DeviceFindings(snap.Devices[i], collector.PolicyFrom(cfg))
	}
	return snap.Health()
}

// confirm feeds confirm_polls failing polls, the last one fresh.
func (h *harness) confirm(faults map[string]fault) {
	h.t.Helper()
	for i := 1; i <= h.cfg.ConfirmPolls; i++ {
		h.poll(i == h.cfg.ConfirmPolls, faults)
	}
}

func (h *harness) cases() []rma.Case {
	h.t.Helper()
	cs, err := h.st.Cases(context.Background(), false)
	if err != nil {
		h.t.Fatal(err)
	}
	return cs
}

// only returns the one case of a dedup key and fails on any other count.
func (h *harness) only(key string) rma.Case {
	h.t.Helper()
	var found []rma.Case
	for _, c := range h.cases() {
		if c.DedupKey == key {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		h.t.Fatalf("cases with key %s: %d, want 1 (%+v)", key, len(found), h.cases())
	}
	return found[0]
}

func (h *harness) events(id string) []string {
	h.t.Helper()
	evs, err := h.st.Events(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	var types []string
	for _, ev := range evs {
		if ev.Seq > 0 {
			types = append(types, ev.Type)
		}
	}
	return types
}

func (h *harness) deliveries(id string) []rma.Delivery {
	h.t.Helper()
	ds, err := h.st.Deliveries(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return ds
}

// rows lists "desk:event" of a case's outbox rows in order.
func (h *harness) rows(id string) []string {
	h.t.Helper()
	var out []string
	for _, d := range h.deliveries(id) {
		var ev rma.DeskEvent
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			h.t.Fatalf("payload of row %d: %v", d.ID, err)
		}
		if ev.Sequence != d.Seq || ev.Case.ID != id || ev.Case.Seq != d.Seq {
			h.t.Errorf("row %d: payload sequence %d / case %s seq %d, want %d / %s", d.ID, ev.Sequence, ev.Case.ID, ev.Case.Seq, d.Seq, id)
		}
		out = append(out, d.Desk+":"+ev.Event)
	}
	return out
}

func (h *harness) page(id string) (rma.Delivery, rma.Page) {
	h.t.Helper()
	var (
		pages []rma.Delivery
		page  rma.Page
	)
	for _, d := range h.deliveries(id) {
		if d.Desk != "pager" {
			continue
		}
		var ev rma.DeskEvent
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			h.t.Fatalf("pager payload %s: %v", d.Payload, err)
		}
		switch {
		case ev.Event == rma.EventPage && ev.Page != nil:
			pages, page = append(pages, d), *ev.Page
		case ev.Event != rma.EventClosed && ev.Event != rma.EventCancelled: // the pager resolves on these
			h.t.Fatalf("the pager got %s: %s", ev.Event, d.Payload)
		}
	}
	if len(pages) != 1 {
		h.t.Fatalf("case %s has %d pages, want exactly 1", id, len(pages))
	}
	return pages[0], page
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func TestEngineBlipGivesNoCaseButRechecks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.poll(true, map[string]fault{"pay-1": missingDev})
	select {
	case m := <-h.rechecks:
		if m != "soft" {
			t.Errorf("recheck of module %q, want soft", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no recheck was asked for after the first failing poll")
	}
	h.poll(true, nil)
	h.poll(true, nil)
	h.poll(true, nil)
	if cs := h.cases(); len(cs) != 0 {
		t.Fatalf("a one-poll blip opened cases: %+v", cs)
	}
	// Healthy: no further rechecks are pending.
	for len(h.rechecks) > 0 {
		<-h.rechecks
	}
	h.poll(false, nil)
	time.Sleep(20 * time.Millisecond) // would be 20 recheck intervals
	h.e.Flush()
	if n := len(h.rechecks); n != 0 {
		t.Errorf("%d rechecks asked for a healthy device", n)
	}
}

func TestEngineConfirmationNeedsAFreshPoll(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("dev-1"))
	for range 5 {
		h.poll(false, map[string]fault{"dev-1": missingDev})
	}
	if cs := h.cases(); len(cs) != 0 {
		t.Fatalf("confirmed without a fresh poll: %+v", cs)
	}
	h.poll(true, map[string]fault{"dev-1": missingDev})
	c := h.only("D1/hardware/missing")
	if !strings.Contains(c.Description, "seen on 6 consecutive polls including one after a fresh C_Initialize") {
		t.Errorf("description does not say what level 1 tried:\n%s", c.Description)
	}
}

func TestEngineSeverity1AloneInPool(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	if c.Severity != 1 || c.Kind != rma.KindHardware || c.Fault != "missing" || c.Tier != "premium-plus" ||
		c.Flow != rma.FlowAdvanceReplacement || c.State != rma.StateOpen || c.Reason != "" || c.Occurrences != 1 {
		t.Errorf("case %+v", c)
	}
	if !strings.Contains(c.Impact, "pool payments: 0 of min 1 healthy members left") {
		t.Errorf("impact %q", c.Impact)
	}
	if want := c.OpenedAt.Add(30 * time.Minute); !c.Due[rma.DueResponse].Equal(want) {
		t.Errorf("response due %v, want %v", c.Due[rma.DueResponse], want)
	}
	for _, part := range []string{"Device: pay-1, serial P1, model SoftHSM v2", "firmware 2.6, hardware 2.6", "Environment: production; pool payments",
		"Contract: C-PAY, tier premium-plus, region emea", "Observed: serial P1 not present", "Since: ", "Agent: hsm-agent 1.2.3-test"} {
		if !strings.Contains(c.Description, part) {
			t.Errorf("description lacks %q:\n%s", part, c.Description)
		}
	}
	// Vendor and internal rows, with the bundle, withheld from the approve desk.
	equal(t, "rows", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened"})
	ds := h.deliveries(c.ID)
	if ds[0].BundlePath == "" || ds[0].BundlePath != ds[1].BundlePath || !ds[0].WithholdBundle || ds[1].WithholdBundle {
		t.Errorf("bundle on the rows: %+v", ds)
	}
	if h.kicks.Load() == 0 {
		t.Error("the outbox worker was not kicked after the commit")
	}
	// No page before the vendor's ticket ID or the fallback.
	h.e.CheckPagesNow()
	equal(t, "rows before the ticket ID", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened"})

	// The vendor desk answers with its ticket ID: the page goes out, once.
	if err := h.st.RecordAttempt(context.Background(), ds[0].ID, store.Attempt{At: h.clock.Now(), Delivered: true, Status: 201, TicketID: "VEND-42"}); err != nil {
		t.Fatal(err)
	}
	h.e.CheckPagesNow()
	h.e.CheckPagesNow()
	h.clock.Advance(5 * time.Minute)
	h.e.CheckPagesNow()
	_, page := h.page(c.ID)
	if page.VendorRef != "VEND-42" || page.Phone != "+44 20 7946 0000" || page.Region != "emea" ||
		!strings.Contains(page.Text, "quote vendor case VEND-42; our case ID "+c.ID) || !strings.Contains(page.Text, "+44 20 7946 0000") {
		t.Errorf("page %+v", page)
	}
	equal(t, "events", h.events(c.ID), []string{rma.EventOpened, rma.EventPage})
	if c := h.only("P1/hardware/missing"); c.Due[rma.DuePage] != (time.Time{}) {
		t.Errorf("the page is still pending after it was sent: %v", c.Due)
	}
}

func TestEnginePageFallbackWithoutVendorReference(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	h.clock.Advance(59 * time.Second)
	h.e.CheckPagesNow()
	if n := len(h.rows(c.ID)); n != 2 {
		t.Fatalf("paged before the fallback delay: %d rows", n)
	}
	h.clock.Advance(2 * time.Second)
	h.e.CheckPagesNow()
	h.e.CheckPagesNow()
	_, page := h.page(c.ID)
	if page.VendorRef != "" || !strings.Contains(page.Text, "vendor reference pending; our case ID "+c.ID) || page.Phone != "+44 20 7946 0000" {
		t.Errorf("fallback page %+v", page)
	}
}

func TestEnginePoolWithHealthyMemberLeft(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("web-1", "web-2"))
	h.clock.Set(start.Add(6 * time.Hour)) // 11:00 in New York: the vendor's desk is open, no page
	h.confirm(map[string]fault{"web-1": failedDev})
	c := h.only("W1/hardware/failed")
	if c.Severity != 2 || !strings.Contains(c.Impact, "pool web: 1 of min 1 healthy members left") || c.Flow != rma.FlowAdvanceReplacement {
		t.Errorf("case %+v", c)
	}
	if _, pending := c.Due[rma.DuePage]; pending {
		t.Error("a severity-2 case has a pending page")
	}
	h.clock.Advance(time.Hour)
	h.e.CheckPagesNow()
	equal(t, "rows", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened"})
	if want := c.OpenedAt.Add(2 * time.Hour); !c.Due[rma.DueResponse].Equal(want) {
		t.Errorf("response due %v, want %v", c.Due[rma.DueResponse], want)
	}
}

func TestEngineDevelopmentDevice(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("dev-1"))
	h.confirm(map[string]fault{"dev-1": missingDev})
	c := h.only("D1/hardware/missing")
	if c.Severity != 2 || c.Environment != "development" || c.Flow != rma.FlowReturnAndRepair || c.Tier != "standard" {
		t.Errorf("case %+v", c)
	}
	equal(t, "rows", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened"})
}

func TestEngineFirmwareBelowMinimum(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": oldFirmware})
	c := h.only("P1/firmware/below_minimum")
	if c.Severity != 3 || c.Kind != rma.KindFirmware || c.Flow != rma.FlowNone || c.Reason != "" {
		t.Errorf("case %+v", c)
	}
	h.clock.Advance(time.Hour)
	h.e.CheckPagesNow()
	equal(t, "rows (vendor gets firmware cases; no page)", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened"})
}

func TestEngineNotCommissionedCapsAt3(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("new-1"))
	h.confirm(map[string]fault{"new-1": missingDev})
	c := h.only("N1/hardware/missing")
	if c.Severity != 3 || !strings.Contains(c.Impact, "capped at 3") {
		t.Errorf("case %+v", c)
	}
	h.clock.Advance(time.Hour)
	h.e.CheckPagesNow()
	equal(t, "rows", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened"})
}

func TestEngineExpiredContractInternalOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("old-1"))
	// The contract itself is a case from the start (no polls needed).
	ct := h.only("O1/contract/expired")
	if ct.Severity != 3 || ct.Kind != rma.KindContract {
		t.Errorf("contract case %+v", ct)
	}
	equal(t, "contract rows", h.rows(ct.ID), []string{"ops:case.opened"})

	h.confirm(map[string]fault{"old-1": missingDev})
	c := h.only("O1/hardware/missing")
	if c.Reason != "contract C-1 expired on 2026-01-31: no vendor case, no RMA" || c.Flow != rma.FlowNone || c.Severity != 1 {
		t.Errorf("case %+v", c)
	}
	// Internal only, and, severity 1 with no vendor to wait for, paged at once.
	equal(t, "rows", h.rows(c.ID), []string{"ops:case.opened", "pager:case.page"})
	_, page := h.page(c.ID)
	if !strings.Contains(page.Text, "No vendor case: contract C-1 expired on 2026-01-31") || page.VendorRef != "" {
		t.Errorf("page %+v", page)
	}
}

func TestEngineSameFaultTwiceAppends(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("dev-1"))
	h.confirm(map[string]fault{"dev-1": missingDev})
	h.poll(true, map[string]fault{"dev-1": missingDev}) // still failing: nothing new
	h.poll(true, nil)                                   // cleared
	h.confirm(map[string]fault{"dev-1": missingDev})    // again
	c := h.only("D1/hardware/missing")
	if c.Occurrences != 2 || c.State != rma.StateOpen {
		t.Errorf("case %+v", c)
	}
	equal(t, "events", h.events(c.ID), []string{rma.EventOpened, rma.EventCleared, rma.EventUpdated})
	equal(t, "rows", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened", "vendor:case.cleared", "ops:case.cleared",
		"vendor:case.updated", "ops:case.updated"})
	if n := h.bundles.Load(); n != 1 {
		t.Errorf("%d bundles built, want 1 (at open only)", n)
	}
}

func TestEngineReopenWithinWindow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("dev-1"))
	ctx := context.Background()
	h.confirm(map[string]fault{"dev-1": missingDev})
	h.poll(true, nil)
	first := h.only("D1/hardware/missing")
	if _, err := h.e.CloseCase(ctx, first.ID, rma.Action{Actor: rma.OperatorActor("alice"), Note: "unit reseated"}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(6 * 24 * time.Hour)
	h.confirm(map[string]fault{"dev-1": missingDev})
	c := h.only("D1/hardware/missing")
	if c.ID != first.ID || c.State != rma.StateOpen || !c.ClosedAt.IsZero() || c.Occurrences != 2 {
		t.Errorf("reopened case %+v", c)
	}
	equal(t, "events", h.events(c.ID), []string{rma.EventOpened, rma.EventCleared, rma.EventClosed, rma.EventReopened})
	equal(t, "rows", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened", "vendor:case.cleared", "ops:case.cleared",
		"vendor:case.closed", "ops:case.closed", "vendor:case.reopened", "ops:case.reopened"})
	if n := h.bundles.Load(); n != 2 {
		t.Errorf("%d bundles built, want 2 (open and reopen)", n)
	}

	// Closed again and back after the window: a new case.
	h.poll(true, nil)
	if _, err := h.e.CloseCase(ctx, c.ID, rma.Action{}); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(8 * 24 * time.Hour)
	h.confirm(map[string]fault{"dev-1": missingDev})
	var ids []string
	for _, x := range h.cases() {
		ids = append(ids, x.ID+":"+string(x.State))
	}
	if len(ids) != 2 || !strings.HasSuffix(ids[0], ":open") || ids[1] != c.ID+":closed" {
		t.Errorf("after the reopen window: cases %v, want a new open one and %s closed", ids, c.ID)
	}
}

func TestEngineFlappingIsHeld(t *testing.T) {
	t.Parallel()
	cfg := testConfig("dev-1")
	cfg.ConfirmPolls, cfg.FlapLimit, cfg.FlapWindow = 1, 2, time.Hour
	h := newHarness(t, cfg)
	for range 6 {
		h.poll(true, map[string]fault{"dev-1": missingDev})
		h.poll(true, nil)
	}
	c := h.only("D1/hardware/missing")
	if !c.Held || c.Occurrences != 6 {
		t.Errorf("flapping case %+v", c)
	}
	equal(t, "events", h.events(c.ID), []string{
		rma.EventOpened, rma.EventCleared, rma.EventUpdated, rma.EventCleared, // confirmations 1 and 2
		rma.EventHeld, rma.EventCleared, // the 3rd is more than flap_limit 2: held, once
		rma.EventUpdated, rma.EventCleared, rma.EventUpdated, rma.EventCleared, rma.EventUpdated, rma.EventCleared})
	equal(t, "rows (none while held)", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened", "vendor:case.cleared", "ops:case.cleared",
		"vendor:case.updated", "ops:case.updated", "vendor:case.cleared", "ops:case.cleared", "vendor:case.held", "ops:case.held"})
}

func TestEngineContractExpiring(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("exp-1")) // expires start+90 days
	if cs := h.cases(); len(cs) != 0 {
		t.Fatalf("cases 90 days before expiry: %+v", cs)
	}
	for _, step := range []struct {
		day    int
		within string
	}{{30, "within 60 days"}, {45, "within 60 days"}, {60, "within 30 days"}, {70, "within 30 days"}, {83, "within 7 days"}, {85, "within 7 days"}} {
		h.clock.Set(start.AddDate(0, 0, step.day))
		h.e.CheckContractsNow()
		c := h.only("E1/contract/expiring")
		if c.Severity != 4 || !strings.Contains(c.Summary, step.within) || !strings.Contains(c.Description, step.within) {
			t.Errorf("day %d: case %q severity %d, want %q", step.day, c.Summary, c.Severity, step.within)
		}
	}
	c := h.only("E1/contract/expiring")
	equal(t, "events: opened at 60 days, updated at 30 and 7", h.events(c.ID), []string{rma.EventOpened, rma.EventUpdated, rma.EventUpdated})
	equal(t, "rows: internal only", h.rows(c.ID), []string{"ops:case.opened", "ops:case.updated", "ops:case.updated"})

	// Expired: a case of its own; the expiring one clears once.
	h.clock.Advance(10 * 24 * time.Hour)
	h.e.CheckContractsNow()
	h.e.CheckContractsNow()
	if x := h.only("E1/contract/expired"); x.Severity != 3 || !strings.Contains(x.Summary, "expired on") {
		t.Errorf("expired case %+v", x)
	}
	equal(t, "expiring events", h.events(c.ID), []string{rma.EventOpened, rma.EventUpdated, rma.EventUpdated, rma.EventCleared})
}

func TestEngineRestartDoesNotDuplicate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("web-1", "web-2"))
	h.clock.Set(start.Add(6 * time.Hour)) // 11:00 in New York: the vendor's desk is open, no page
	h.confirm(map[string]fault{"web-1": failedDev})
	c := h.only("W1/hardware/failed")
	rows := len(h.deliveries(c.ID))

	h.restart()
	h.confirm(map[string]fault{"web-1": failedDev})
	h.confirm(map[string]fault{"web-1": failedDev})
	if got := h.only("W1/hardware/failed"); got.ID != c.ID || got.Occurrences != 1 {
		t.Errorf("after restart: %+v", got)
	}
	equal(t, "events after restart", h.events(c.ID), []string{rma.EventOpened})
	if n := len(h.deliveries(c.ID)); n != rows {
		t.Errorf("outbox rows after restart: %d, want %d", n, rows)
	}
	// The recovered fault still clears.
	h.poll(true, nil)
	equal(t, "events after recovery", h.events(c.ID), []string{rma.EventOpened, rma.EventCleared})

	// A restart after the clearing: the next confirmation is a recurrence.
	h.restart()
	h.confirm(map[string]fault{"web-1": failedDev})
	equal(t, "events after the second restart", h.events(c.ID), []string{rma.EventOpened, rma.EventCleared, rma.EventUpdated})
}

func TestEngineRestartSendsPendingPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	h.stop()
	h.clock.Advance(2 * time.Minute)
	h.startEngine() // checks pending pages at start
	h.page(c.ID)
}

func TestOperatorActions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	ctx := context.Background()
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	alice := rma.Action{Actor: rma.OperatorActor("alice"), Note: "shipping the spare"}

	// Unknown IDs.
	for name, err := range map[string]error{
		"close":   second(rma.CloseCase(ctx, h.st, rma.PolicyFrom(h.cfg), "HA-NOPE", alice)),
		"cancel":  second(rma.CancelCase(ctx, h.st, rma.PolicyFrom(h.cfg), "HA-NOPE", alice)),
		"approve": second(rma.ApproveBundle(ctx, h.st, rma.PolicyFrom(h.cfg), "HA-NOPE", alice)),
		"note":    rma.AddNote(ctx, h.st, "HA-NOPE", alice),
	} {
		if err == nil || !strings.Contains(err.Error(), `no case with ID "HA-NOPE"`) || !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s of an unknown case: %v", name, err)
		}
	}

	// Approve: the approve desk gets a case.approved row with the bundle,
	// and the pending opened row gets its bundle back.
	got, err := rma.ApproveBundle(ctx, h.st, rma.PolicyFrom(h.cfg), c.ID, alice)
	if err != nil || !got.BundleApproved {
		t.Fatalf("approve: %+v %v", got, err)
	}
	ds := h.deliveries(c.ID)
	equal(t, "rows after approve", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened", "vendor:case.approved"})
	if ds[0].WithholdBundle || ds[2].WithholdBundle || ds[2].BundlePath == "" || ds[2].BundlePath != ds[0].BundlePath {
		t.Errorf("bundles after approve: %+v", ds)
	}
	if _, err := rma.ApproveBundle(ctx, h.st, rma.PolicyFrom(h.cfg), c.ID, alice); err == nil || !strings.Contains(err.Error(), "already approved") {
		t.Errorf("approve twice: %v", err)
	}
	if err := rma.AddNote(ctx, h.st, c.ID, rma.Action{Actor: "operator:bob"}); err == nil {
		t.Error("an empty note was accepted")
	}
	if err := h.e.AddNote(ctx, c.ID, rma.Action{Actor: "operator:bob", Note: "called the vendor"}); err != nil {
		t.Fatal(err)
	}

	// Cancel, then every action but a note is refused.
	got, err = h.e.CancelCase(ctx, c.ID, alice)
	if err != nil || got.State != rma.StateCancelled || got.ClosedAt.IsZero() {
		t.Fatalf("cancel: %+v %v", got, err)
	}
	for name, err := range map[string]error{
		"close":   second(h.e.CloseCase(ctx, c.ID, alice)),
		"cancel":  second(h.e.CancelCase(ctx, c.ID, alice)),
		"approve": second(h.e.ApproveBundle(ctx, c.ID, alice)),
	} {
		var te *rma.TerminalError
		if !errors.Is(err, rma.ErrTerminal) || !errors.As(err, &te) || !strings.Contains(err.Error(), "was already cancelled") {
			t.Errorf("%s of a cancelled case: %v", name, err)
		}
	}
	if err := rma.AddNote(ctx, h.st, c.ID, rma.Action{Note: "post-mortem done"}); err != nil {
		t.Errorf("a note on a cancelled case: %v", err)
	}
	equal(t, "rows after cancel", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened", "vendor:case.approved",
		"vendor:case.cancelled", "ops:case.cancelled"})

	evs, err := h.st.Events(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, ev := range evs {
		if ev.Type != rma.EventDelivery {
			log = append(log, ev.Type+"/"+ev.Actor)
		}
	}
	equal(t, "log", log, []string{"case.opened/agent", "case.approved/operator:alice", "note/operator:bob",
		"case.cancelled/operator:alice", "note/operator"})
	// A cancelled case's pending page is dropped.
	h.clock.Advance(time.Hour)
	h.e.CheckPagesNow()
	for _, d := range h.deliveries(c.ID) {
		if d.Desk == "pager" {
			t.Error("a cancelled case was paged")
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestEngineMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1", "dev-1"))
	h.confirm(map[string]fault{"pay-1": missingDev, "dev-1": oldFirmware})
	open := func(sev1hw, sev3fw int) string {
		var b strings.Builder
		b.WriteString("# HELP hsm_cases_open Open support cases (not closed or cancelled) by severity and fault kind, from the case store.\n# TYPE hsm_cases_open gauge\n")
		for sev := 1; sev <= 4; sev++ {
			for _, k := range rma.Kinds {
				v := 0
				switch {
				case sev == 1 && k == rma.KindHardware:
					v = sev1hw
				case sev == 3 && k == rma.KindFirmware:
					v = sev3fw
				}
				b.WriteString(`hsm_cases_open{kind="` + string(k) + `",severity="` + string(rune('0'+sev)) + `"} ` + string(rune('0'+v)) + "\n")
			}
		}
		return b.String()
	}
	if err := testutil.CollectAndCompare(h.e, strings.NewReader(open(1, 1)), "hsm_cases_open"); err != nil {
		t.Error(err)
	}
	c := h.only("P1/hardware/missing")
	if _, err := h.e.CloseCase(context.Background(), c.ID, rma.Action{}); err != nil {
		t.Fatal(err)
	}
	if err := testutil.CollectAndCompare(h.e, strings.NewReader(open(0, 1)), "hsm_cases_open"); err != nil {
		t.Errorf("after close: %v", err)
	}
	events := "# HELP hsm_case_events_total Case events this agent recorded since it started, by event type (case.opened, case.page, ...).\n" +
		"# TYPE hsm_case_events_total counter\n"
	for _, ev := range []string{"case.approved", "case.breached", "case.bundle", "case.cancelled", "case.cleared", "case.closed", "case.due",
		"case.escalated", "case.held", "case.opened", "case.page", "case.reminder", "case.reopened", "case.updated", "note"} {
		n := "0"
		switch ev {
		case rma.EventOpened:
			n = "2"
		case rma.EventClosed:
			n = "1"
		}
		events += `hsm_case_events_total{event="` + ev + `"} ` + n + "\n"
	}
	if err := testutil.CollectAndCompare(h.e, strings.NewReader(events), "hsm_case_events_total"); err != nil {
		t.Error(err)
	}
}

func TestEngineObserveNeverBlocks(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := rma.NewEngine(rma.PolicyFrom(testConfig("pay-1")), rma.EngineOptions{Store: st, QueueSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Not running: the queue fills and further snapshots are dropped
	// instead of blocking the poll loop.
	for range 10 {
		e.Observe(health.Poll{Polled: []string{"soft"}})
	}
	if _, err := rma.NewEngine(rma.PolicyFrom(testConfig()), rma.EngineOptions{}); err == nil {
		t.Error("NewEngine without a store must fail")
	}
}

func TestEngineReloadRenewedContract(t *testing.T) {
	t.Parallel()
	cfg := testConfig("exp-1")
	h := newHarness(t, cfg)
	h.clock.Set(start.AddDate(0, 0, 40)) // 50 days left
	h.e.CheckContractsNow()
	c := h.only("E1/contract/expiring")

	renewed := testConfig("exp-1")
	renewed.Devices[0].Contract.Expires = date("2029-12-31")
	h.e.Reload(rma.PolicyFrom(renewed))
	h.e.Flush()
	h.e.CheckContractsNow()
	equal(t, "events after renewal", h.events(c.ID), []string{rma.EventOpened, rma.EventCleared})
	if got := h.only("E1/contract/expiring"); got.State != rma.StateOpen {
		t.Errorf("a cleared case stays open until an operator closes it: %+v", got)
	}
}

func TestEngineEscalationToSeverity1Pages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("web-1", "web-2"))
	h.confirm(map[string]fault{"web-1": failedDev}) // web-2 healthy: 2
	h.poll(true, nil)
	// Both fail: web-1's recurrence now leaves its pool empty: 1.
	h.confirm(map[string]fault{"web-1": failedDev, "web-2": missingDev})
	c := h.only("W1/hardware/failed")
	if c.Severity != 1 || !strings.Contains(c.Impact, "pool web: 0 of min 1") {
		t.Fatalf("escalated case %+v", c)
	}
	if want := c.UpdatedAt.Add(30 * time.Minute); !c.Due[rma.DueResponse].Equal(want) {
		t.Errorf("response due after escalation %v, want %v", c.Due[rma.DueResponse], want)
	}
	h.clock.Advance(61 * time.Second)
	h.e.CheckPagesNow()
	_, page := h.page(c.ID)
	if page.Phone != "+1 212 555 0100" || page.Region != "americas" {
		t.Errorf("page %+v", page)
	}
	equal(t, "events", h.events(c.ID), []string{rma.EventOpened, rma.EventCleared, rma.EventUpdated, rma.EventPage})
	if w2 := h.only("W2/hardware/missing"); w2.Severity != 1 {
		t.Errorf("web-2 case %+v", w2)
	}
	h.page(h.only("W2/hardware/missing").ID)
}

// TestEngineReloadNotDroppedByFullQueue: a reload that arrives while the
// snapshot queue is full still applies (issue 8: reloads coalesce, they
// are never dropped).
func TestEngineReloadNotDroppedByFullQueue(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := testConfig("pay-1")
	e, err := rma.NewEngine(rma.PolicyFrom(cfg), rma.EngineOptions{Store: st, QueueSize: 1,
		Bundle: func(context.Context, rma.Case) (string, error) { return "", nil }})
	if err != nil {
		t.Fatal(err)
	}
	// Not running yet: the first snapshot fills the queue, the second is dropped.
	e.Observe(health.Poll{})
	e.Observe(health.Poll{})
	next := *cfg
	next.ConfirmPolls = 7
	e.Reload(rma.PolicyFrom(&next))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for e.ConfirmPolls() != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("confirm_polls = %d after a reload to 7 made while the queue was full", e.ConfirmPolls())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
