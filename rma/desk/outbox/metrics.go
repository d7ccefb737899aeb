package outbox

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// countsTimeout bounds the store query behind the outbox gauges at a scrape.
const countsTimeout = 2 * time.Second

// Metric names the worker exports.
const (
	MetricOutboxPending    = "hsm_outbox_pending"
	MetricOutboxParked     = "hsm_outbox_parked"
	MetricDeliveries       = "hsm_desk_deliveries_total"
	MetricLastSuccessTime  = "hsm_desk_last_success_timestamp_seconds"
	labelDesk, labelResult = "desk", "result"
)

// metrics holds the delivery counters and reads the outbox depth from the
// store at each scrape (the last good counts if the store fails then).
type metrics struct {
	st    Store
	desks []string
	log   *slog.Logger

	deliveries  *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	pending     *prometheus.Desc
	parked      *prometheus.Desc

	mu         sync.Mutex
	lastCounts map[string]store.OutboxCount
	countsErr  bool
}

func newMetrics(st Store, desks []string, log *slog.Logger) *metrics {
	m := &metrics{
		st: st, desks: desks, log: log,
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricDeliveries,
			Help: "Delivery attempts of case events by desk and result: success, or the reason of the failure (timeout, connection, status_4xx, status_5xx, status_429, bad_response, write_error, bundle_error, invalid).",
		}, []string{labelDesk, labelResult}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricLastSuccessTime,
			Help: "Unix time of the last case event the desk accepted (since the agent started).",
		}, []string{labelDesk}),
		pending: prometheus.NewDesc(MetricOutboxPending,
			"Case events waiting for delivery to the desk, retries included.", []string{labelDesk}, nil),
		parked: prometheus.NewDesc(MetricOutboxParked,
			"Case events the desk refused for good (a non-retryable answer): kept and shown as failed, not delivered.", []string{labelDesk}, nil),
	}
	for _, d := range desks {
		m.deliveries.WithLabelValues(d, desk.ResultSuccess)
	}
	return m
}

func (m *metrics) observe(deskName, result string, at time.Time) {
	m.deliveries.WithLabelValues(deskName, result).Inc()
	if result == desk.ResultSuccess {
		m.lastSuccess.WithLabelValues(deskName).Set(float64(at.UnixNano()) / 1e9)
	}
}

// Describe implements prometheus.Collector.
func (w *Worker) Describe(ch chan<- *prometheus.Desc) {
	w.m.deliveries.Describe(ch)
	w.m.lastSuccess.Describe(ch)
	ch <- w.m.pending
	ch <- w.m.parked
}

// Collect implements prometheus.Collector: the delivery counters, the last
// success times, and the outbox depth by desk (every configured desk, plus
// any desk that still has rows).
func (w *Worker) Collect(ch chan<- prometheus.Metric) {
	m := w.m
	m.deliveries.Collect(ch)
	m.lastSuccess.Collect(ch)
	counts := m.counts()
	names := map[string]bool{}
	for _, d := range m.desks {
		names[d] = true
	}
	for d := range counts {
		names[d] = true
	}
	for _, d := range slices.Sorted(maps.Keys(names)) {
		c := counts[d]
		ch <- prometheus.MustNewConstMetric(m.pending, prometheus.GaugeValue, float64(c.Pending), d)
		ch <- prometheus.MustNewConstMetric(m.parked, prometheus.GaugeValue, float64(c.Parked), d)
	}
}

// counts asks the store, falling back to the last good answer.
func (m *metrics) counts() map[string]store.OutboxCount {
	ctx, cancel := context.WithTimeout(context.Background(), countsTimeout)
	defer cancel()
	c, err := m.st.OutboxCounts(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if !m.countsErr {
			m.countsErr = true
			m.log.Warn("cannot read the outbox depth for the metrics; showing the last known values", "err", err)
		}
		return m.lastCounts
	}
	if m.countsErr {
		m.countsErr = false
		m.log.Info("outbox depth readable again")
	}
	m.lastCounts = c
	return c
}
