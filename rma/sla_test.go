package rma_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
	"github.com/prometheus/client_golang/prometheus"
)

// step records a flow transition as s10-flow's actions do: the state and
// its case.<state> event at a time.
func (h *harness) step(id string, to rma.State, at time.Time, actor string) {
	h.t.Helper()
	_, err := h.st.Transition(context.Background(), id, func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.State = to
		return rma.Event{Type: rma.StateEvent(to), At: at, Actor: actor}, nil, nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// breaches reads hsm_sla_breaches_total{clock,tier} from the engine.
func (h *harness) breaches(clock, tier string) float64 {
	h.t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.e)
	mfs, err := reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "hsm_sla_breaches_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["clock"] == clock && labels["tier"] == tier {
				return m.GetCounter().GetValue()
			}
		}
	}
	h.t.Fatalf("no hsm_sla_breaches_total{clock=%q,tier=%q}", clock, tier)
	return 0
}

// escalations lists the levels of a case's case.escalated events in order.
func (h *harness) escalations(id string) []string {
	h.t.Helper()
	evs, err := h.st.Events(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		if ev.Type == rma.EventEscalated {
			var d struct{ Level string }
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				h.t.Fatal(err)
			}
			out = append(out, d.Level)
		}
	}
	return out
}

func count(list []string, s string) int {
	n := 0
	for _, v := range list {
		if v == s {
			n++
		}
	}
	return n
}

func TestSLADueDatesFollowTheFlow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	// Premium-plus counts wall time from the opening.
	for clock, d := range map[string]time.Duration{rma.ClockInitialResponse: 4 * time.Hour, rma.ClockUpdate: 2 * time.Hour,
		rma.ClockEscalateSupportManager: 2 * time.Hour, rma.ClockEscalateExecutive: 8 * time.Hour,
		rma.ClockEscalateDirector: 24 * time.Hour, rma.ClockEscalateUnresolved: 72 * time.Hour} {
		if got, want := c.Due[clock], c.OpenedAt.Add(d); !got.Equal(want) {
			t.Errorf("due %s = %v, want %v", clock, got, want)
		}
	}
	if want := c.OpenedAt.Add(30 * time.Minute); !c.Due[rma.DueResponse].Equal(want) {
		t.Errorf("the internal response target %v, want %v", c.Due[rma.DueResponse], want)
	}
	h.e.CheckSLANow()
	equal(t, "events after a tick with nothing changed", h.events(c.ID), []string{rma.EventOpened})

	// The vendor confirms on a Friday after the EMEA cut-off-free day: the
	// replacement ships by the end of the next business day (Monday).
	confirmed := time.Date(2026, 3, 6, 16, 0, 0, 0, time.UTC)
	h.step(c.ID, rma.StateConfirmed, confirmed, "desk:vendor")
	h.clock.Set(confirmed.Add(time.Minute))
	h.e.CheckSLANow()
	h.e.CheckSLANow()
	c = h.only("P1/hardware/missing")
	cal, err := calendar.New(calendar.EMEA, calendar.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if want := cal.EndOfNextBusinessDay(confirmed); !c.Due[rma.ClockReplacementShip].Equal(want) || want.Weekday() != time.Monday {
		t.Errorf("replacement_ship %v, want %v (a Monday)", c.Due[rma.ClockReplacementShip], want)
	}
	if _, ok := c.Due[rma.ClockInitialResponse]; ok {
		t.Errorf("initial_response still due after the vendor confirmed: %v", c.Due)
	}
	if want := confirmed.Add(2 * time.Hour); !c.Due[rma.ClockUpdate].Equal(want) {
		t.Errorf("update due %v, want %v (2 h after the vendor's last event)", c.Due[rma.ClockUpdate], want)
	}
	if n := count(h.events(c.ID), rma.EventDue); n != 1 {
		t.Errorf("case.due events %d, want 1 (written only when the dates change): %v", n, h.events(c.ID))
	}
}

func TestSLADueMetricOpenCasesOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.e)
	find := func() (float64, bool) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "hsm_case_due_timestamp_seconds" && strings.Contains(m.String(), c.ID) &&
					strings.Contains(m.String(), `value:"`+rma.ClockEscalateDirector+`"`) {
					return m.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	if v, ok := find(); !ok || int64(v) != c.OpenedAt.Add(24*time.Hour).Unix() {
		t.Errorf("hsm_case_due_timestamp_seconds{clock=escalate_director} = %v (%v), want %d", v, ok, c.OpenedAt.Add(24*time.Hour).Unix())
	}
	if _, err := h.e.CloseCase(context.Background(), c.ID, rma.Action{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := find(); ok {
		t.Error("a closed case still exports its due dates")
	}
}

func TestSLAOneEscalationPerLevelAcrossRestarts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	tick := func(at time.Duration) {
		h.clock.Set(c.OpenedAt.Add(at))
		h.e.CheckSLANow()
		h.e.CheckSLANow()
	}
	tick(2*time.Hour - time.Second)
	if got := h.escalations(c.ID); len(got) != 0 {
		t.Fatalf("escalated before the support-manager point: %v", got)
	}
	tick(2*time.Hour + time.Second)
	equal(t, "levels at 2 h", h.escalations(c.ID), []string{rma.LevelSupportManager})
	if n := h.breaches(rma.ClockEscalateSupportManager, config.TierPremiumPlus); n != 1 {
		t.Errorf("support-manager breaches %v, want 1", n)
	}
	var escalatedRows []string
	for _, r := range h.rows(c.ID) {
		if strings.HasSuffix(r, ":"+rma.EventEscalated) {
			escalatedRows = append(escalatedRows, r)
		}
	}
	equal(t, "case.escalated rows", escalatedRows, []string{"vendor:case.escalated", "ops:case.escalated"})

	h.restart()
	tick(2*time.Hour + 2*time.Second)
	equal(t, "levels after a restart", h.escalations(c.ID), []string{rma.LevelSupportManager})
	if n := h.breaches(rma.ClockEscalateSupportManager, config.TierPremiumPlus); n != 0 {
		t.Errorf("the restarted agent counted the support-manager breach again: %v", n)
	}
	tick(8*time.Hour + time.Second)
	h.restart()
	tick(24*time.Hour + time.Second)
	h.restart()
	tick(72*time.Hour + time.Second) // any case open 3 days: the support manager has it already
	tick(80 * time.Hour)
	equal(t, "levels", h.escalations(c.ID), []string{rma.LevelSupportManager, rma.LevelExecutive, rma.LevelDirector})
	evs, err := h.st.Events(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	breached := map[string]int{}
	for _, ev := range evs {
		if ev.Type == rma.EventBreached {
			var d struct{ Clock string }
			_ = json.Unmarshal(ev.Data, &d)
			breached[d.Clock]++
		}
	}
	if breached[rma.ClockEscalateUnresolved] != 1 || breached[rma.ClockInitialResponse] != 1 {
		t.Errorf("breach records %v, want escalate_unresolved and initial_response once each", breached)
	}
}

func TestSLARemindsAtTheUpdateFrequency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": missingDev})
	c := h.only("P1/hardware/missing")
	reminders := func() int { return count(h.rows(c.ID), "vendor:"+rma.EventReminder) }
	at := func(d time.Duration) {
		h.clock.Set(c.OpenedAt.Add(d))
		h.e.CheckSLANow()
		h.e.CheckSLANow()
	}
	at(2*time.Hour - time.Second)
	if n := reminders(); n != 0 {
		t.Fatalf("reminded before the update was due: %d", n)
	}
	at(2*time.Hour + time.Second)
	if n := reminders(); n != 1 {
		t.Fatalf("reminders at 2 h: %d, want 1", n)
	}
	if n := count(h.rows(c.ID), "ops:"+rma.EventReminder); n != 0 {
		t.Errorf("the internal desk got %d reminders; they go to the vendor desk", n)
	}
	at(4 * time.Hour)
	if n := reminders(); n != 1 {
		t.Errorf("reminders at 4 h: %d, want 1 (the next is due 2 h after the last)", n)
	}
	at(4*time.Hour + 2*time.Second)
	if n := reminders(); n != 2 {
		t.Errorf("reminders after 4 h: %d, want 2", n)
	}
	// The vendor updates: the next reminder is 2 h after its update.
	h.step(c.ID, rma.StateConfirmed, c.OpenedAt.Add(5*time.Hour), "desk:vendor")
	at(7*time.Hour - time.Second)
	if n := reminders(); n != 2 {
		t.Errorf("reminded within 2 h of the vendor's update: %d", n)
	}
	h.restart()
	at(7*time.Hour + time.Second)
	if n := reminders(); n != 3 {
		t.Errorf("reminders 2 h after the vendor's update: %d, want 3", n)
	}
	if n := h.breaches(rma.ClockUpdate, config.TierPremiumPlus); n != 0 {
		t.Errorf("update breach counted again after the restart: %v", n)
	}
}

func TestSLASeverity3RaisedOnceAfter30Days(t *testing.T) {
	t.Parallel()
	h := newHarness(t, testConfig("pay-1"))
	h.confirm(map[string]fault{"pay-1": oldFirmware})
	c := h.only("P1/firmware/below_minimum")
	if c.Severity != 3 {
		t.Fatalf("severity %d, want 3", c.Severity)
	}
	cal, err := calendar.New(calendar.EMEA, calendar.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	due := cal.AddCalendarDays(c.OpenedAt, 30) // the same London time: 30 days less the hour of the DST change
	h.clock.Set(due.Add(-time.Minute))
	h.e.CheckSLANow()
	if c := h.only("P1/firmware/below_minimum"); c.Severity != 3 {
		t.Fatalf("raised before 30 days: %d", c.Severity)
	}
	h.clock.Set(due.Add(time.Minute))
	h.e.CheckSLANow()
	h.restart()
	h.e.CheckSLANow()
	h.e.CheckSLANow()
	c = h.only("P1/firmware/below_minimum")
	if c.Severity != 2 {
		t.Errorf("severity %d after 30 days, want 2", c.Severity)
	}
	evs, err := h.st.Events(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	raised := 0
	for _, ev := range evs {
		if ev.Type == rma.EventUpdated && strings.Contains(ev.Note, "raised from 3 to 2") {
			raised++
		}
	}
	if raised != 1 {
		t.Errorf("raise events %d, want exactly 1", raised)
	}
	if n := count(h.escalations(c.ID), rma.LevelSupportManager); n != 1 {
		t.Errorf("support-manager escalations %d, want 1 (severity 3 after a week, not again as severity 2)", n)
	}
}
