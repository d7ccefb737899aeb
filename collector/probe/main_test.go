package probe

import (
	"context"
	"log/slog"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/internal/testutil"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/pkcs11test/pkcs11testtb"
)

// workerEnv makes this test binary act as `hsm-agent probe-worker`.
const workerEnv = testutil.WorkerEnv

func TestMain(m *testing.M) {
	testutil.RunWorkerIfAsked()
	os.Exit(m.Run())
}

// rig is a SoftHSM2 fleet behind the fault module, and a prober for it.
type rig struct {
	t      *testing.T
	fleet  *pkcs11test.Fleet
	faults *pkcs11test.Faults
	logs   *logBuffer
	opts   Options
}

// newRig creates a fleet of n tokens and a fault control directory.
func newRig(t *testing.T, n int) *rig {
	t.Helper()
	fleet := pkcs11testtb.NewFleet(t, n)
	faults, err := pkcs11test.NewFaults(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { faults.ClearAll() })
	env := map[string]string{workerEnv: "1"}
	maps.Copy(env, fleet.Env())
	maps.Copy(env, faults.Env())
	return &rig{t: t, fleet: fleet, faults: faults, logs: &logBuffer{}, opts: Options{
		Module:  "test",
		Library: pkcs11testtb.FaultModule(t),
		Env:     env,
		Command: []string{os.Args[0]},
		Timeout: 10 * time.Second,
	}}
}

// prober starts a prober with the rig's options; it is closed at cleanup.
func (r *rig) prober() *Prober {
	r.t.Helper()
	logger := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := New(r.opts, logger)
	r.t.Cleanup(func() { p.Close() })
	return p
}

func (r *rig) poll(p *Prober, req Request) Result {
	r.t.Helper()
	return p.Poll(context.Background(), req)
}

func (r *rig) set(serial string, f pkcs11test.Fault, value string) {
	r.t.Helper()
	if err := r.faults.Set(serial, f, value); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) clear() {
	r.t.Helper()
	if err := r.faults.ClearAll(); err != nil {
		r.t.Fatal(err)
	}
}

// serials returns the serials of the result's tokens.
func serials(res Result) []string {
	var s []string
	for _, t := range res.Tokens {
		s = append(s, t.Serial)
	}
	return s
}

// tokenBySerial returns the reported token with serial, or nil.
func tokenBySerial(res Result, serial string) *p11.Token {
	for i := range res.Tokens {
		if res.Tokens[i].Serial == serial {
			return &res.Tokens[i]
		}
	}
	return nil
}

// checkOf returns the named check of t, or nil.
func checkOf(t *p11.Token, name string) *p11.Check {
	if t == nil {
		return nil
	}
	for i := range t.Checks {
		if t.Checks[i].Name == name {
			return &t.Checks[i]
		}
	}
	return nil
}

// requireAll fails unless every fleet token, except the given serials (not
// looked at), reported with token_info, session_open and random OK.
func (r *rig) requireAll(res Result, except ...string) {
	r.t.Helper()
	for _, tok := range r.fleet.Tokens {
		if contains(except, tok.Serial) {
			continue
		}
		got := tokenBySerial(res, tok.Serial)
		if got == nil {
			r.t.Errorf("token %s (%s) not reported; got %v (module error %q)", tok.Serial, tok.Label, serials(res), res.ModuleError)
			continue
		}
		for _, name := range []string{p11.CheckTokenInfo, p11.CheckSessionOpen, p11.CheckRandom} {
			if c := checkOf(got, name); c == nil || !c.OK {
				r.t.Errorf("token %s check %s = %+v, want OK", tok.Serial, name, c)
			}
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct{ testutil.SyncBuffer }

func (l *logBuffer) count(substr string) int {
	return strings.Count(l.String(), substr)
}
