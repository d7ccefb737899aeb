// Package cli holds the hsm-agent subcommands other than `run`: check,
// config check, cases, case, bundle, desk test, outbox and demo. Each takes its
// arguments, writes to stdout and stderr and returns the exit code. They
// read the state database read-only (rma/store) and reach a running daemon
// through its control socket; the daemon itself is package agent.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hsm-agent/hsm-agent/agent"
	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

// DefaultConfigFile is where the packaged agent keeps its configuration.
const DefaultConfigFile = "/etc/hsm-agent/config.yml"

// cliFlags parses the flags shared by the case commands; positional
// arguments may come before or after the flags.
type cliFlags struct {
	fs     *flag.FlagSet
	config *string
	json   *bool
}

func newCLIFlags(name string, stderr io.Writer) *cliFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &cliFlags{fs: fs, config: fs.String("config", DefaultConfigFile, "configuration `FILE`"), json: fs.Bool("json", false, "print JSON")}
}

// parse returns the positional arguments wherever they stood among the flags.
func (f *cliFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		if f.fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, f.fs.Arg(0))
		args = f.fs.Args()[1:]
	}
}

// openCLI loads the configuration and opens the state database the daemon uses.
func openCLI(configFile string) (*config.Config, *store.Store, error) {
	cfg, err := config.Load(configFile)
	if err != nil {
		return nil, nil, err
	}
	// The CLI never creates the database: created by root, it would lock
	// the service user out of its own state.
	path := filepath.Join(cfg.StateDir, agent.StateDBName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no state database at %s (state_dir in %s): the agent has not run yet, so there are no cases", path, cfg.File)
	}
	st, err := agent.OpenStore(cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, st, nil
}

// CaseDetail is `cases show ID --json`: the case with its log and deliveries.
type CaseDetail struct {
	rma.Case
	Events     []rma.Event    `json:"events"`
	Deliveries []rma.Delivery `json:"deliveries"`
}

// Cases runs `cases [--all] [--json]` and `cases show ID [--json]`.
func Cases(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newCLIFlags("cases", stderr)
	all := f.fs.Bool("all", false, "include closed and cancelled cases")
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	cfg, st, err := openCLI(*f.config)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent cases: %v\n", err)
		return 1
	}
	defer st.Close()
	_ = cfg
	switch {
	case len(pos) == 0:
		cases, bad, err := st.CaseList(ctx, !*all)
		if err != nil {
			fmt.Fprintf(stderr, "hsm-agent cases: %v\n", err)
			return 1
		}
		code := 0
		for _, b := range bad {
			fmt.Fprintf(stderr, "hsm-agent cases: case %s is left out, it cannot be read (`hsm-agent cases show %s` says why): %v\n", b.ID, b.ID, b.Err)
			code = 1
		}
		if *f.json {
			return max(printJSON(stdout, stderr, nonNil(cases)), code)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSEV\tKIND\tFAULT\tDEVICE\tSERIAL\tSTATE\tOPENED\tCLEARED\tSUMMARY")
		for _, c := range cases {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.ID, c.Severity, c.Kind, c.Fault, c.Device, c.Serial, c.State,
				c.OpenedAt.UTC().Format(time.RFC3339), timeOrDash(c.ClearedAt), c.Summary)
		}
		_ = tw.Flush()
		return code
	case len(pos) == 2 && pos[0] == "show":
		detail, err := caseDetail(ctx, st, pos[1])
		if err != nil {
			fmt.Fprintf(stderr, "hsm-agent cases show: %v\n", err)
			return 1
		}
		if *f.json {
			return printJSON(stdout, stderr, detail)
		}
		printCase(stdout, detail)
		return 0
	default:
		fmt.Fprintln(stderr, "usage: hsm-agent cases [--all] [--json] | hsm-agent cases show ID [--json]")
		return 2
	}
}

func caseDetail(ctx context.Context, st *store.Store, id string) (CaseDetail, error) {
	c, err := st.Case(ctx, id)
	if err != nil {
		return CaseDetail{}, err
	}
	events, err := st.Events(ctx, id)
	if err != nil {
		return CaseDetail{}, err
	}
	deliveries, err := st.Deliveries(ctx, id)
	if err != nil {
		return CaseDetail{}, err
	}
	return CaseDetail{Case: c, Events: nonNil(events), Deliveries: nonNil(deliveries)}, nil
}

func printCase(w io.Writer, d CaseDetail) {
	c := d.Case
	fmt.Fprintf(w, "case %s  severity %d  %s/%s  state %s\n", c.ID, c.Severity, c.Kind, c.Fault, c.State)
	fmt.Fprintf(w, "device %s (serial %s), %s, pool %q, tier %s, flow %s\n", c.Device, c.Serial, c.Environment, c.Pool, c.Tier, c.Flow)
	fmt.Fprintf(w, "opened %s; %s\n", c.OpenedAt.UTC().Format(time.RFC3339), c.Summary)
	if !c.ClearedAt.IsZero() {
		fmt.Fprintf(w, "cleared %s: the device no longer shows the fault\n", c.ClearedAt.UTC().Format(time.RFC3339))
	}
	if c.RMANumber != "" || c.Tracking != "" {
		fmt.Fprintf(w, "rma %s, tracking %s\n", orDash(c.RMANumber), orDash(c.Tracking))
	}
	if c.Impact != "" {
		fmt.Fprintf(w, "impact: %s\n", c.Impact)
	}
	if c.Reason != "" {
		fmt.Fprintf(w, "note: %s\n", c.Reason)
	}
	fmt.Fprintln(w, "\nevents:")
	for _, e := range d.Events {
		fmt.Fprintf(w, "  %s  #%d %-16s %-18s %s\n", e.At.UTC().Format(time.RFC3339), e.Seq, e.Type, e.Actor, e.Note)
	}
	fmt.Fprintln(w, "\ndeliveries:")
	for _, dl := range d.Deliveries {
		fmt.Fprintf(w, "  #%d -> %-10s %-9s attempts %d  ticket %q  %s\n", dl.Seq, dl.Desk, dl.State, dl.Attempts, dl.TicketID, dl.LastError)
	}
}

// caseUsage is the synopsis of `case`.
const caseUsage = "usage: hsm-agent case ID EVENT [--rma N] [--tracking T] [--at RFC3339] [--note S] [--attest zeroized] [--config FILE]\n" +
	"  EVENT: confirm, authorize, ship, receive, install, return, close, cancel, approve, note"

// CaseAction runs `case ID EVENT [--rma N] [--tracking T] [--at RFC3339]
// [--note S] [--attest zeroized]`: one flow event or operator action,
// through rma.Step like the daemon's API, recorded with the OS user as the
// actor. An event the case's state does not take names the allowed ones.
func CaseAction(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newCLIFlags("case", stderr)
	note := f.fs.String("note", "", "a note for the case log (`S`)")
	rmaNumber := f.fs.String("rma", "", "the vendor's RMA number `N` (authorize)")
	tracking := f.fs.String("tracking", "", "the shipment's tracking number `T` (ship, return)")
	at := f.fs.String("at", "", "when it happened, `RFC3339` (default now)")
	attest := f.fs.String("attest", "", "\"zeroized\": the unit leaving the site had its key material destroyed (ship, return)")
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if len(pos) != 2 {
		fmt.Fprintln(stderr, caseUsage)
		return 2
	}
	id, event := pos[0], pos[1]
	act := rma.Action{Actor: rma.OperatorActor(osUser()), Note: *note}
	if *at != "" {
		if act.At, err = time.Parse(time.RFC3339, *at); err != nil {
			fmt.Fprintf(stderr, "hsm-agent case %s %s: --at %q is not an RFC 3339 time (e.g. 2026-03-02T14:05:00Z): %v\n", id, event, *at, err)
			return 2
		}
	}
	cfg, st, err := openCLI(*f.config)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent case: %v\n", err)
		return 1
	}
	defer st.Close()
	in := rma.EventInput{Event: event, RMA: *rmaNumber, Tracking: *tracking, Attest: *attest, Note: *note}
	c, err := rma.Step(ctx, st, rma.PolicyFrom(cfg), id, in, act)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent case %s %s: %v\n", id, event, err)
		return 1
	}
	fmt.Fprintf(stdout, "case %s: %s (state %s); the running agent delivers the desk events\n", c.ID, event, c.State)
	return 0
}

// Bundle runs `bundle SERIAL [-o FILE]`: it asks the running daemon for a
// bundle (with its probe history and log lines) and falls back to one poll
// of its own when no daemon answers.
func Bundle(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newCLIFlags("bundle", stderr)
	out := f.fs.String("o", "", "copy the bundle to `FILE`")
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "usage: hsm-agent bundle SERIAL [-o FILE] [--config FILE]")
		return 2
	}
	cfg, err := config.Load(*f.config)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent bundle: %v\n", err)
		return 1
	}
	path, err := agent.RequestBundle(ctx, cfg, pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent bundle: no running agent answered (%v); polling once myself\n", err)
		path, err = agent.LocalBundle(ctx, cfg, pos[0], nil)
	}
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent bundle: %v\n", err)
		return 1
	}
	if *out != "" {
		if err := copyFile(path, *out); err != nil {
			fmt.Fprintf(stderr, "hsm-agent bundle: %v\n", err)
			return 1
		}
		path = *out
	}
	fmt.Fprintln(stdout, path)
	return 0
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o600)
}

// DeskTest runs `desk test NAME`: it sends a clearly marked test event.
func DeskTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newCLIFlags("desk", stderr)
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	if len(pos) != 2 || pos[0] != "test" {
		fmt.Fprintln(stderr, "usage: hsm-agent desk test NAME [--config FILE]")
		return 2
	}
	cfg, err := config.Load(*f.config)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent desk test: %v\n", err)
		return 1
	}
	var names []string
	for _, dc := range cfg.Desks {
		names = append(names, dc.Name)
		if dc.Name != pos[1] {
			continue
		}
		d, err := agent.NewDesk(dc, agent.NewLogger(stderr, 0), agent.DeskOptions{Version: agent.Version})
		if err != nil {
			fmt.Fprintf(stderr, "hsm-agent desk test %s: %v\n", dc.Name, err)
			return 1
		}
		ticket, err := desk.Test(ctx, d)
		if err != nil {
			fmt.Fprintf(stderr, "hsm-agent desk test %s: FAILED: %v\n", dc.Name, err)
			return 1
		}
		fmt.Fprintf(stdout, "desk %s (%s, role %s): OK, ticket %q\n", dc.Name, dc.Type, dc.Role, ticket)
		return 0
	}
	fmt.Fprintf(stderr, "hsm-agent desk test: no desk named %q in %s; desks: %s\n", pos[1], cfg.File, strings.Join(names, ", "))
	return 1
}

func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "hsm-agent: %v\n", err)
		return 1
	}
	return 0
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// timeOrDash formats a time for a table, "-" when zero.
func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// osUser names the operator for the case log.
func osUser() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if u := os.Getenv(k); u != "" {
			return u
		}
	}
	return ""
}
