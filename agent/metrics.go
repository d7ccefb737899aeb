package agent

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInfo is hsm_agent_build_info{version,goversion} 1.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "hsm_agent_build_info",
		Help:        "Always 1; labels carry the hsm-agent version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": Version, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// reloadMetrics report the outcome of the last configuration load.
type reloadMetrics struct {
	success   prometheus.Gauge
	timestamp prometheus.Gauge
}

func newReloadMetrics() *reloadMetrics {
	return &reloadMetrics{
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hsm_agent_config_last_reload_successful",
			Help: "1 if the last configuration load or reload succeeded, 0 if it failed and the previous configuration is still running.",
		}),
		timestamp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hsm_agent_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load or reload.",
		}),
	}
}

func (r *reloadMetrics) set(ok bool, now time.Time) {
	if ok {
		r.success.Set(1)
		r.timestamp.Set(float64(now.Unix()))
		return
	}
	r.success.Set(0)
}
