package rma

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Kinds lists every fault kind in the order the metrics export them.
var Kinds = []Kind{KindHardware, KindOperational, KindFirmware, KindContract}

// eventTypes are the case events counted from the start (zero until seen).
var eventTypes = []string{EventOpened, EventUpdated, EventCleared, EventReopened, EventHeld, EventClosed,
	EventCancelled, EventBundleApproved, EventBundleAdded, EventPage, EventNote}

// metrics are the engine's Prometheus series.
type metrics struct {
	openDesc *prometheus.Desc
	events   *prometheus.CounterVec

	mu   sync.Mutex
	open map[openKey]int // from the store, refreshed after each change
	set  bool
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
		open: map[openKey]int{},
	}
	for _, t := range eventTypes {
		m.events.WithLabelValues(t)
	}
	return m
}

// setOpen replaces the open-case counts with those of cases.
func (m *metrics) setOpen(cases []Case) {
	open := map[openKey]int{}
	for _, c := range cases {
		if !c.State.Terminal() {
			open[openKey{c.Severity, c.Kind}]++
		}
	}
	m.mu.Lock()
	m.open, m.set = open, true
	m.mu.Unlock()
}

func (m *metrics) describe(ch chan<- *prometheus.Desc) {
	ch <- m.openDesc
	m.events.Describe(ch)
}

// collect exports every severity x kind combination (0 when none), so that
// alerts see a zero rather than no series; nothing before the first
// refresh from the store.
func (m *metrics) collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	open, set := m.open, m.set
	m.mu.Unlock()
	if set {
		for sev := SeverityUrgent; sev <= SeverityLow; sev++ {
			for _, k := range Kinds {
				ch <- prometheus.MustNewConstMetric(m.openDesc, prometheus.GaugeValue, float64(open[openKey{sev, k}]), strconv.Itoa(sev), string(k))
			}
		}
	}
	m.events.Collect(ch)
}
