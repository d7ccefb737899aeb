package rma

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"

	"github.com/prometheus/client_golang/prometheus"
)

// Kinds lists every fault kind in the order the metrics export them.
var Kinds = []Kind{KindHardware, KindOperational, KindFirmware, KindContract}

// eventTypes are the case events counted from the start (zero until seen).
var eventTypes = []string{EventOpened, EventUpdated, EventCleared, EventReopened, EventHeld, EventClosed,
	EventCancelled, EventBundleApproved, EventBundleAdded, EventPage, EventNote, EventDue, EventBreached, EventEscalated, EventReminder}

// metrics are the engine's Prometheus series.
type metrics struct {
	openDesc *prometheus.Desc
	dueDesc  *prometheus.Desc
	events   *prometheus.CounterVec
	breaches *prometheus.CounterVec

	mu   sync.Mutex
	open map[openKey]int // from the store, refreshed after each change
	due  []caseDue       // the open cases' due dates
	set  bool
}

// caseDue is one due date of an open case.
type caseDue struct {
	id, clock string
	at        time.Time
}

type openKey struct {
	severity int
	kind     Kind
}

func newMetrics() *metrics {
	m := &metrics{
		openDesc: prometheus.NewDesc("hsm_cases_open", "Open support cases (not closed or cancelled) by severity and fault kind, from the case store.",
			[]string{"severity", "kind"}, nil),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hsm_case_events_total",
			Help: "Case events this agent recorded since it started, by event type (case.opened, case.page, ...)."}, []string{"event"}),
		dueDesc: prometheus.NewDesc("hsm_case_due_timestamp_seconds",
			"When each clock of an open case is due (Unix seconds): the vendor targets (initial_response, update, replacement_ship, repair_return, faulty_return), the escalation points and the internal response target.",
			[]string{"case", "clock"}, nil),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hsm_sla_breaches_total",
			Help: "Vendor clocks that passed with their event not done, once per case and clock, by clock and contract tier, since this agent started."}, []string{"clock", "tier"}),
		open: map[openKey]int{},
	}
	for _, t := range eventTypes {
		m.events.WithLabelValues(t)
	}
	for _, tier := range []string{config.TierPremiumPlus, config.TierPremium, config.TierStandard} {
		for _, clock := range vendorClocks {
			if clock != ClockRaiseSeverity {
				m.breaches.WithLabelValues(clock, tier)
			}
		}
	}
	return m
}

// setOpen replaces the open-case counts with those of cases.
func (m *metrics) setOpen(cases []Case) {
	open := map[openKey]int{}
	var due []caseDue
	for _, c := range cases {
		if c.State.Terminal() {
			continue
		}
		open[openKey{c.Severity, c.Kind}]++
		for _, k := range slices.Sorted(maps.Keys(c.Due)) {
			if k != DuePage && k != DueBundle {
				due = append(due, caseDue{c.ID, k, c.Due[k]})
			}
		}
	}
	m.mu.Lock()
	m.open, m.due, m.set = open, due, true
	m.mu.Unlock()
}

func (m *metrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.openDesc
	ch <- m.dueDesc
	m.events.Describe(ch)
	m.breaches.Describe(ch)
}

// collect exports every severity x kind combination (0 when none), so that
// alerts see a zero rather than no series; nothing before the first
// refresh from the store.
func (m *metrics) collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	open, due, set := m.open, m.due, m.set
	m.mu.Unlock()
	for _, d := range due {
		ch <- prometheus.MustNewConstMetric(m.dueDesc, prometheus.GaugeValue, float64(d.at.UnixNano())/1e9, d.id, d.clock)
	}
	if set {
		for sev := SeverityUrgent; sev <= SeverityLow; sev++ {
			for _, k := range Kinds {
				ch <- prometheus.MustNewConstMetric(m.openDesc, prometheus.GaugeValue, float64(open[openKey{sev, k}]), strconv.Itoa(sev), string(k))
			}
		}
	}
	m.events.Collect(ch)
	m.breaches.Collect(ch)
}
