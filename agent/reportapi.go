package agent

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// HeaderLeftOutCases lists, comma-separated, the IDs of the cases that
// /api/v1/reports/sla could not cover (unreadable rows, devices no longer
// in the inventory); absent when it covers every case.
const HeaderLeftOutCases = "X-Hsm-Agent-Left-Out-Cases"

// ReportPeriod is the period of a report: cases opened at or after Since
// and before Until; a zero bound is open.
type ReportPeriod struct {
	Since, Until time.Time
}

// Contains reports whether t lies in the period.
func (p ReportPeriod) Contains(t time.Time) bool {
	return (p.Since.IsZero() || !t.Before(p.Since)) && (p.Until.IsZero() || t.Before(p.Until))
}

// ParseReportPeriod parses the bounds of a report, each YYYY-MM-DD (a UTC
// day; until includes the whole day) or RFC 3339, "" for none. sinceName
// and untilName name them in errors (the CLI's flags, the API's
// parameters).
func ParseReportPeriod(sinceName, since, untilName, until string) (ReportPeriod, error) {
	var p ReportPeriod
	var err error
	if p.Since, err = parseReportTime(sinceName, since, false); err != nil {
		return p, err
	}
	if p.Until, err = parseReportTime(untilName, until, true); err != nil {
		return p, err
	}
	if !p.Since.IsZero() && !p.Until.IsZero() && !p.Since.Before(p.Until) {
		return p, fmt.Errorf("%s %s is not before %s %s: the period is empty; give a %s before the %s", sinceName, since, untilName, until, sinceName, untilName)
	}
	return p, nil
}

// parseReportTime parses one bound; a date as the end bound means the end
// of that day.
func parseReportTime(name, s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.Parse(time.DateOnly, s); err == nil {
		if end {
			d = d.AddDate(0, 0, 1)
		}
		return d, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not a date; use YYYY-MM-DD (a UTC day, e.g. 2026-03-01) or RFC 3339 (e.g. 2026-03-01T09:00:00Z)", name, s)
	}
	return t.UTC(), nil
}

// SLAReport is the SLA report of the cases in st opened in period, at now,
// with cfg's inventory, calendars and rma.return_days: `hsm-agent report
// sla` and GET /api/v1/reports/sla both answer with it. left lists the
// cases it could not cover and why.
func SLAReport(ctx context.Context, cfg *config.Config, st *store.Store, period ReportPeriod, now time.Time) (rows []rma.SLARow, left []rma.LeftOut, err error) {
	if _, err := rma.NewCalendars(cfg.Calendars); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	cases, bad, err := st.CaseList(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	for _, b := range bad {
		left = append(left, rma.LeftOut{CaseID: b.ID, Reason: fmt.Sprintf("its row cannot be read (`hsm-agent cases show %s` says why): %v", b.ID, b.Err)})
	}
	in := rma.ReportInput{Policy: rma.PolicyFrom(cfg), Now: now}
	for _, c := range cases {
		if !period.Contains(c.OpenedAt) {
			continue
		}
		events, err := st.Events(ctx, c.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("case %s: %w", c.ID, err)
		}
		in.Cases = append(in.Cases, rma.CaseLog{Case: c, Events: events})
	}
	rows, more := rma.SLAReport(in)
	return nonNil(rows), append(left, more...), nil
}

// slaReportHandler serves GET /api/v1/reports/sla?since=&until=: the rows
// of SLAReport as a JSON array; the cases it could not cover are named in
// HeaderLeftOutCases and logged.
func (a *Agent) slaReportHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	period, err := ParseReportPeriod("since", q.Get("since"), "until", q.Get("until"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	rows, left, err := SLAReport(r.Context(), a.config(), a.store, period, a.now())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	ids := make([]string, 0, len(left))
	for _, l := range left {
		a.logger.Error("a case is left out of the SLA report", "case", l.CaseID, "err", l.Reason)
		ids = append(ids, l.CaseID)
	}
	if len(ids) > 0 {
		w.Header().Set(HeaderLeftOutCases, strings.Join(ids, ","))
	}
	writeJSON(w, http.StatusOK, rows)
}
