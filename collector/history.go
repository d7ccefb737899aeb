package collector

import (
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// History bounds: the last RecentObservations polls of every device, and
// the last FaultObservations non-healthy ones (kept longer, for diagnostics).
const (
	RecentObservations = 100
	FaultObservations  = 200
)

// Observation is one classified poll of one device.
type Observation struct {
	Time   time.Time
	Serial string
	State  State
	Kind   Kind
	Reason string
	// Fresh is true when the poll ran in a fresh worker (fresh C_Initialize).
	Fresh bool
	// Token is the token as reported in this poll, nil when it did not report.
	Token *p11.Token

	seq uint64
}

// history is a bounded per-device record: every observation goes into
// recent, the non-healthy ones also into faults, each trimmed to its bound.
type history struct {
	seq    uint64
	recent []Observation
	faults []Observation
}

func (h *history) add(o Observation) {
	h.seq++
	o.seq = h.seq
	h.recent = appendBounded(h.recent, o, RecentObservations)
	if o.State != StateHealthy {
		h.faults = appendBounded(h.faults, o, FaultObservations)
	}
}

func appendBounded(s []Observation, o Observation, limit int) []Observation {
	if len(s) >= limit {
		// Shift in place; the backing array never grows past limit.
		copy(s, s[len(s)-limit+1:])
		s = s[:limit-1]
	}
	return append(s, o)
}

// list merges both buffers, oldest first, without duplicates.
func (h *history) list() []Observation {
	out := make([]Observation, 0, len(h.recent)+len(h.faults))
	i, j := 0, 0
	for i < len(h.faults) || j < len(h.recent) {
		switch {
		case j >= len(h.recent) || (i < len(h.faults) && h.faults[i].seq < h.recent[j].seq):
			out = append(out, h.faults[i])
			i++
		case i >= len(h.faults) || h.recent[j].seq < h.faults[i].seq:
			out = append(out, h.recent[j])
			j++
		default: // same observation in both
			out = append(out, h.recent[j])
			i++
			j++
		}
	}
	return out
}
