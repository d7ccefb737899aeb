package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

const outboxUsage = "usage: hsm-agent outbox [--json] | hsm-agent outbox retry ID|--all"

// Outbox runs `outbox [--json]`, which lists the parked outbox rows (a
// desk refused the event for good), and `outbox retry ID|--all`, which
// makes them pending again; the running agent's outbox worker sends them
// on its next scan.
func Outbox(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	f := newCLIFlags("outbox", stderr)
	all := f.fs.Bool("all", false, "retry: requeue every parked row")
	pos, err := f.parse(args)
	if err != nil {
		return 2
	}
	switch {
	case len(pos) == 0 && !*all:
	case len(pos) == 1 && pos[0] == "retry" && *all:
	case len(pos) == 2 && pos[0] == "retry" && !*all:
	default:
		fmt.Fprintln(stderr, outboxUsage)
		return 2
	}
	_, st, err := openCLI(*f.config)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent outbox: %v\n", err)
		return 1
	}
	defer st.Close()
	parked, err := st.ParkedDeliveries(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "hsm-agent outbox: %v\n", err)
		return 1
	}
	if len(pos) == 0 {
		if *f.json {
			return printJSON(stdout, stderr, nonNil(parked))
		}
		printParked(stdout, parked)
		return 0
	}
	var ids []int64
	if *all {
		for _, d := range parked {
			ids = append(ids, d.ID)
		}
	} else {
		id, err := strconv.ParseInt(pos[1], 10, 64)
		if err != nil || id <= 0 {
			fmt.Fprintf(stderr, "hsm-agent outbox retry: %q is not a row ID: use the ID column of `hsm-agent outbox`\n", pos[1])
			return 2
		}
		ids = []int64{id}
	}
	return requeue(ctx, st, ids, stdout, stderr)
}

// requeue makes the rows pending again and says what it did for each.
func requeue(ctx context.Context, st *store.Store, ids []int64, stdout, stderr io.Writer) int {
	if len(ids) == 0 {
		fmt.Fprintln(stdout, "no parked outbox rows")
		return 0
	}
	code := 0
	for _, id := range ids {
		err := st.Requeue(ctx, id, rma.OperatorActor(osUser()))
		switch {
		case err == nil:
			fmt.Fprintf(stdout, "outbox row %d requeued; the running agent sends it on its next scan\n", id)
		case errors.Is(err, store.ErrNotFound):
			fmt.Fprintf(stderr, "hsm-agent outbox retry: there is no outbox row %d (`hsm-agent outbox` lists the parked ones)\n", id)
			code = 1
		default:
			fmt.Fprintf(stderr, "hsm-agent outbox retry: %v\n", err)
			code = 1
		}
	}
	return code
}

// printParked writes the parked rows as a table.
func printParked(w io.Writer, parked []rma.Delivery) {
	if len(parked) == 0 {
		fmt.Fprintln(w, "no parked outbox rows")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDESK\tCASE\tSEQ\tATTEMPTS\tLAST ERROR")
	for _, d := range parked {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", d.ID, d.Desk, d.CaseID, d.Seq, d.Attempts, orDash(d.LastError))
	}
	_ = tw.Flush()
}
