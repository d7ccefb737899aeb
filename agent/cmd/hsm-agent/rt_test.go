package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/internal/testutil/realrt"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk/rt"
)

// TestTenDaemonsOneRTTicket runs ten `hsm-agent run` processes, each with
// its own state directory, watching the same SoftHSM token and filing to
// the same real Request Tracker 5 (Debian's packages, on loopback). When
// the token fails, every agent opens its case and delivers it: exactly one
// RT ticket stays open (the lowest ID; any other an agent created in the
// race is resolved as its duplicate), with the case's priority and the
// bundle attached, and every agent records that ticket. An agent restarted
// with its state lost finds that ticket instead of filing another; closing
// the case on one agent comments on the ticket and resolves it.
func TestTenDaemonsOneRTTicket(t *testing.T) {
	r := realrt.Start(t)
	const agents = 10
	cfgs, listens, serial, faults := rtDaemonConfigs(t, r, agents)
	daemons := make([]*daemon, agents)
	for i := range agents {
		daemons[i] = startDaemon(t, cfgs[i])
	}
	for i := range agents {
		waitMetrics(t, "http://"+listens[i], fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 1`, serial), time.Minute)
	}
	if err := faults.Set(serial, pkcs11test.FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	refs, c := waitTicketRefs(t, cfgs)
	all := r.Tickets(t, c.DedupKey)
	var open []string
	for id, st := range all {
		if st != "resolved" {
			open = append(open, id)
		}
	}
	if len(open) != 1 {
		t.Fatalf("ten agents left RT tickets %v: want exactly one open", all)
	}
	id := open[0]
	for i, ref := range refs {
		if ref != id {
			t.Errorf("agent %d recorded ticket %s, want %s (the one open)", i, ref, id)
		}
	}
	t.Logf("ten agents: %d ticket(s) created, #%s open", len(all), id)
	var tk map[string]any
	r.MustGet(t, "ticket/"+id, nil, &tk)
	if want := fmt.Sprint(rt.Priority(c.Severity)); fmt.Sprint(tk["Priority"]) != want {
		t.Errorf("severity %d ticket has Priority %v, want %s", c.Severity, tk["Priority"], want)
	}
	if !hasBundle(t, r, id) {
		t.Errorf("ticket %s has no diagnostics bundle attached", id)
	}

	// Agent 0 restarts with its state lost: it opens the case afresh and
	// finds the open ticket in RT instead of filing a second one.
	_ = daemons[0].cmd.Process.Signal(syscall.SIGTERM)
	<-daemons[0].exited
	if err := os.RemoveAll(filepath.Join(filepath.Dir(cfgs[0]), "state")); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, cfgs[0])
	waitMetrics(t, "http://"+listens[0], fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 0`, serial), time.Minute)
	if ref, _ := waitTicketRefs(t, cfgs[:1]); ref[0] != id {
		t.Errorf("the restarted agent recorded ticket %s, want %s", ref[0], id)
	}

	// Closing the case on one agent comments on the ticket and resolves it.
	if code, _, errOut := hsmAgent(t, "case", casesJSON(t, cfgs[1])[0].ID, "close", "--note", "replaced", "--config", cfgs[1]); code != 0 {
		t.Fatalf("case close: exit %d: %s", code, errOut)
	}
	waitEvery(t, 2*time.Minute, time.Second, "the ticket resolved", func() bool { return r.Tickets(t, c.DedupKey)[id] == "resolved" })
	if n := r.Transactions(t, id, "Comment"); n < 1 {
		t.Errorf("the closed case left no comment on ticket %s", id)
	}
	if after := r.Tickets(t, c.DedupKey); len(after) != len(all) {
		t.Errorf("tickets %v after the restart and close, want the same %d as before", after, len(all))
	}
}

// rtDaemonConfigs writes n agent configurations over one SoftHSM token,
// each with its own state directory and listen address and an rt desk at
// r as root.
func rtDaemonConfigs(t *testing.T, r *realrt.Server, n int) (cfgs, listens []string, serial string, faults *pkcs11test.Faults) {
	t.Helper()
	base, fleet, faults := caseSite(t, 1, "127.0.0.1:0", nil, "")
	raw, err := os.ReadFile(base)
	if err != nil {
		t.Fatal(err)
	}
	password := filepath.Join(t.TempDir(), "rt.password")
	if err := os.WriteFile(password, []byte("password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range n {
		dir := t.TempDir()
		listen := freePort(t)
		cfg := strings.Replace(string(raw), `listen: "127.0.0.1:0"`, fmt.Sprintf("listen: %q", listen), 1)
		cfg = strings.Replace(cfg, fmt.Sprintf("state_dir: %q", filepath.Join(filepath.Dir(base), "state")), fmt.Sprintf("state_dir: %q", filepath.Join(dir, "state")), 1)
		cfg += fmt.Sprintf("desks:\n  - {name: rt, type: rt, role: vendor, url: %q, queue: General, username: root, password_file: %q, timeout: 60s}\n", r.Base, password)
		file := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cfgs, listens = append(cfgs, file), append(listens, listen)
	}
	return cfgs, listens, fleet.Tokens[0].Serial, faults
}

// waitTicketRefs waits until the one case of every agent (by config file)
// records its RT ticket, and returns the tickets and a case.
func waitTicketRefs(t *testing.T, cfgs []string) ([]string, rma.Case) {
	t.Helper()
	refs := make([]string, len(cfgs))
	var c rma.Case
	waitEvery(t, 3*time.Minute, time.Second, "every agent's case delivered to RT", func() bool {
		for i := range cfgs {
			if refs[i] != "" {
				continue
			}
			cases := casesJSON(t, cfgs[i])
			if len(cases) == 1 && cases[0].DeskRefs["rt"] != "" {
				refs[i], c = cases[0].DeskRefs["rt"], cases[0]
			}
		}
		return !slices.Contains(refs, "")
	})
	return refs, c
}

// hasBundle reports whether the ticket has a file attached.
func hasBundle(t *testing.T, r *realrt.Server, id string) bool {
	var c realrt.Items
	r.MustGet(t, "ticket/"+id+"/attachments", map[string][]string{"fields": {"Filename"}, "per_page": {"100"}}, &c)
	for _, it := range c.Items {
		if s, _ := it["Filename"].(string); strings.HasSuffix(s, ".tar.gz") {
			return true
		}
	}
	return false
}

// waitEvery checks cond every interval until it holds, failing after timeout.
func waitEvery(t *testing.T, timeout, interval time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(interval)
	}
}
