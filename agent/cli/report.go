package cli

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/hsm-agent/hsm-agent/agent"
	"github.com/hsm-agent/hsm-agent/rma"
)

const reportUsage = "usage: hsm-agent report sla [--config FILE] [--since DATE] [--until DATE] [--json|--csv]"

// Report runs `report sla [--since DATE] [--until DATE] [--json|--csv]`:
// every vendor target of the cases opened in the period (agent.SLAReport,
// the same rows as GET /api/v1/reports/sla), as a table, a JSON array or
// CSV with a header row. Cases it cannot cover are named on stderr (exit 1).
func Report(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newCLIFlags("report", stderr)
	asCSV := f.fs.Bool("csv", false, "print CSV with a header row")
	since := f.fs.String("since", "", "only cases opened on or after `DATE` (YYYY-MM-DD or RFC 3339)")
	until := f.fs.String("until", "", "only cases opened before `DATE`; a YYYY-MM-DD day is included")
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 || pos[0] != "sla" || (*asCSV && *f.json) {
		fmt.Fprintln(stderr, reportUsage)
		return 2
	}
	period, err := agent.ParseReportPeriod("--since", *since, "--until", *until)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent report sla: %v\n", err)
		return 2
	}
	cfg, st, err := openCLI(*f.config)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent report sla: %v\n", err)
		return 1
	}
	defer st.Close()
	rows, left, err := agent.SLAReport(ctx, cfg, st, period, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent report sla: %v\n", err)
		return 1
	}
	code := 0
	for _, l := range left {
		fmt.Fprintf(stderr, "hsm-agent report sla: case %s is left out: %s\n", l.CaseID, l.Reason)
		code = 1
	}
	switch {
	case *f.json:
		return max(printJSON(stdout, stderr, rows), code)
	case *asCSV:
		if err := writeSLACSV(stdout, rows); err != nil {
			fmt.Fprintf(stderr, "hsm-agent report sla: %v\n", err)
			return 1
		}
	default:
		printSLATable(stdout, rows)
	}
	return code
}

// slaCSVHeader names the CSV columns as the JSON fields of rma.SLARow.
var slaCSVHeader = []string{"case_id", "device", "serial", "tier", "contract_id", "region", "severity", "state",
	"clock", "start", "due", "done", "status", "counting", "elapsed", "elapsed_seconds", "credit_eligible"}

func writeSLACSV(w io.Writer, rows []rma.SLARow) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(slaCSVHeader)
	for _, r := range rows {
		_ = cw.Write([]string{r.CaseID, r.Device, r.Serial, r.Tier, r.ContractID, r.Region, strconv.Itoa(r.Severity), string(r.State),
			r.Clock, reportTime(r.Start, ""), reportTime(r.Due, ""), reportTime(r.Done, ""), r.Status, r.Counting,
			r.ElapsedText, strconv.FormatInt(r.ElapsedSeconds, 10), strconv.FormatBool(r.CreditEligible)})
	}
	cw.Flush()
	return cw.Error()
}

func printSLATable(w io.Writer, rows []rma.SLARow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tDEVICE\tSERIAL\tTIER\tCONTRACT\tREGION\tSEV\tCLOCK\tDUE\tDONE\tSTATUS\tELAPSED\tCOUNTING\tCREDITS")
	for _, r := range rows {
		credits := "no"
		if r.CreditEligible {
			credits = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.CaseID, r.Device, r.Serial, r.Tier,
			r.ContractID, r.Region, r.Severity, r.Clock, reportTime(r.Due, "-"), reportTime(r.Done, "-"), r.Status,
			r.ElapsedText, r.Counting, credits)
	}
	_ = tw.Flush()
}

// reportTime formats a report time in UTC, none for the zero time.
func reportTime(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
