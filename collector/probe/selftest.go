package probe

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// selftestState is what the prober remembers about one token's self-test.
type selftestState struct {
	lastRun time.Time
	// refused is set after the token refused the PIN; the PIN file's
	// fingerprint then was refusedFP. No login is tried again until the
	// file's content, size or modification time differ.
	refused    bool
	refusedFP  pinFingerprint
	refusedErr string
	refusedAt  time.Time
	// readErr is the last PIN file error logged (logged once per change).
	readErr string
	// failed is set while the last self-test that ran failed with an error
	// other than a refused PIN: a fresh poll (a confirmation recheck) runs
	// it again rather than letting one failure stand for a whole
	// selftest_interval (level 1 re-checks before a fault is confirmed).
	failed bool
}

// pinFingerprint identifies one version of a PIN file without keeping the PIN.
type pinFingerprint struct {
	sum   [sha256.Size]byte
	size  int64
	mtime time.Time
}

// selftestRun is one self-test of one poll: either decided without a worker
// (check set at once) or running in a worker (done closes when check is set).
type selftestRun struct {
	serial  string
	pinFile string
	fp      pinFingerprint
	done    chan struct{}
	check   *p11.Check
}

// startSelfTests decides which self-tests of the tokens that reported in
// res are due and starts a worker for each. PIN files are read here, by the
// parent. Each self-test has Timeout plus twice the time this poll's
// C_GetTokenInfo calls took: the worker and then crypto11 walk the slots
// with it to find the token, so a slow neighbour is charged for its own
// time, not the self-test.
func (p *Prober) startSelfTests(ctx context.Context, tests []SelfTest, res *Result) []*selftestRun {
	var runs []*selftestRun
	now := time.Now()
	var walk time.Duration
	for i := range res.Tokens {
		if c := res.Tokens[i].Check(p11.CheckTokenInfo); c != nil {
			walk += c.Duration
		}
	}
	for _, st := range tests {
		if st.Serial == "" || st.PINFile == "" {
			continue
		}
		if tokenOf(res, st.Serial) == nil {
			continue // not reported: nothing to show a result on; due next poll
		}
		state := p.selftests[st.Serial]
		if state == nil {
			state = &selftestState{}
			p.selftests[st.Serial] = state
		}
		run := &selftestRun{serial: st.Serial, pinFile: st.PINFile}
		pin, fp, err := readPINFile(st.PINFile)
		run.fp = fp
		due, skip := p.selfTestDue(st, state, fp, err, now, res)
		if !due {
			clear(pin)
			if skip != nil {
				run.check = skip
				runs = append(runs, run)
			}
			continue
		}
		state.lastRun = now
		run.done = make(chan struct{})
		runs = append(runs, run)
		deadline := now.Add(p.opts.Timeout + 2*walk)
		go func() {
			defer close(run.done)
			c := p.runSelfTest(ctx, deadline, st.Serial, pin)
			run.check = &c
		}()
	}
	return runs
}

// selfTestDue decides whether the self-test of st runs now. When it does
// not, skip is the not-run check to report, or nil when nothing is due.
func (p *Prober) selfTestDue(st SelfTest, state *selftestState, fp pinFingerprint, readErr error, now time.Time, res *Result) (due bool, skip *p11.Check) {
	intervalDue := state.lastRun.IsZero() || now.Sub(state.lastRun) >= p.opts.SelftestInterval
	if readErr != nil {
		if msg := readErr.Error(); msg != state.readErr {
			state.readErr = msg
			p.log.Warn("cannot read the PIN file; login_sign self-test not run", "serial", st.Serial, "err", readErr)
		}
		if intervalDue {
			return false, &p11.Check{Name: p11.CheckLoginSign, NotRun: readErr.Error()}
		}
		return false, nil
	}
	state.readErr = ""
	if state.refused {
		if fp == state.refusedFP {
			return false, &p11.Check{Name: p11.CheckLoginSign, Error: state.refusedErr,
				NotRun: fmt.Sprintf("the token refused the PIN in %s at %s; not tried again until that file changes",
					st.PINFile, state.refusedAt.Format(time.RFC3339))}
		}
		p.log.Info("PIN file changed since the token refused it; self-test due again", "serial", st.Serial, "pin_file", st.PINFile)
		state.refused = false
		intervalDue = true
	}
	if state.failed && res.Fresh {
		intervalDue = true
	}
	if !intervalDue {
		return false, nil
	}
	if f := (p11.Token{Flags: p.lastFlags[st.Serial]}).BlocksLogin(); f != "" {
		return false, &p11.Check{Name: p11.CheckLoginSign, NotRun: "token reports " + f + "; never logging in (a wrong PIN could lock it)"}
	}
	if len(res.Unresponsive) > 0 || len(res.Crashed) > 0 {
		// crypto11 walks the slots to find a token: it would hang or crash
		// on that token, and the self-test would be charged for it.
		return false, &p11.Check{Name: p11.CheckLoginSign, NotRun: "a token of this module hung or crashed in this poll; self-tests wait until none does"}
	}
	return true, nil
}

// finishSelfTests waits for the running self-tests (each bounded by its
// deadline), merges their checks into the tokens and records refused PINs.
func (p *Prober) finishSelfTests(runs []*selftestRun, res *Result) {
	for _, run := range runs {
		if run.done != nil {
			<-run.done
		}
		c := run.check
		if c == nil {
			continue
		}
		if run.done != nil {
			p.selftests[run.serial].failed = !c.OK && !p11.IsPINRefused(c.Error)
		}
		if run.done != nil && p11.IsPINRefused(c.Error) {
			state := p.selftests[run.serial]
			state.refused, state.refusedFP, state.refusedErr, state.refusedAt = true, run.fp, c.Error, time.Now()
			p.log.Warn("the token refused the PIN; no login until the PIN file changes",
				"serial", run.serial, "pin_file", run.pinFile, "err", c.Error)
		}
		merged := false
		for i := range res.Tokens {
			if res.Tokens[i].Serial == run.serial {
				res.Tokens[i].Checks = append(res.Tokens[i].Checks, *c)
				merged = true
				break
			}
		}
		if !merged {
			// The result cannot be shown on a token that did not report:
			// run the self-test again next poll rather than a whole
			// selftest_interval later.
			if state := p.selftests[run.serial]; state != nil && run.done != nil {
				state.lastRun = time.Time{}
			}
			p.log.Debug("self-test result for a token that did not report in this poll; retrying next poll", "serial", run.serial, "ok", c.OK, "error", c.Error)
		}
	}
}

// tokenOf returns the token of res with serial, or nil.
func tokenOf(res *Result, serial string) *p11.Token {
	for i := range res.Tokens {
		if res.Tokens[i].Serial == serial {
			return &res.Tokens[i]
		}
	}
	return nil
}

// runSelfTest runs one self-test in its own worker.
func (p *Prober) runSelfTest(ctx context.Context, deadline time.Time, serial string, pin []byte) p11.Check {
	fail := func(format string, args ...any) p11.Check {
		return p11.Check{Name: p11.CheckLoginSign, Error: fmt.Sprintf(format, args...)}
	}
	log := p.log.With("serial", serial)
	w, err := startWorker(p.command, p.env, p.opts.Library, p11.ModeSelfTest, log, scrubWith(pin))
	if err != nil {
		return fail("%v", err)
	}
	defer func() {
		w.stopListening()
		if !w.waitExit(200 * time.Millisecond) {
			w.kill()
		}
		killGroup(w.cmd)
	}()
	line, err := json.Marshal(p11.WorkerRequest{Serial: serial, PIN: p11.PIN(pin)})
	clear(pin)
	if err != nil {
		return fail("encode self-test request: %v", err)
	}
	err = w.send(append(line, '\n'))
	clear(line)
	w.closeStdin()
	if err != nil {
		return fail("self-test worker: %v", err)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		select {
		case batch, ok := <-w.events:
			if !ok {
				if w.readErr != nil {
					return fail("self-test worker wrote bad output: %v", w.readErr)
				}
				status := "no exit status"
				if w.waitExit(time.Second) {
					status = w.exitStatus()
				}
				msg := fmt.Sprintf("self-test worker ended without a result (%s)", status)
				if t := w.stderrTail(); t != "" {
					msg += "; last output: " + t
				}
				return fail("%s", msg)
			}
			for _, ev := range batch {
				switch ev.Type {
				case p11.EventFatal:
					return fail("%s", ev.Message)
				case p11.EventSelfTest:
					if ev.Result == nil {
						return fail("self-test worker sent no result")
					}
					return *ev.Result
				}
			}
		case <-timer.C:
			w.kill()
			log.Warn("self-test did not finish before the probe deadline; killed its worker")
			return fail("no answer before the probe deadline; worker killed")
		case <-ctx.Done():
			w.kill()
			return fail("self-test cancelled: %v", context.Cause(ctx))
		}
	}
}

// readPINFile reads a PIN file: the PIN is the content without the final
// line break.
func readPINFile(path string) ([]byte, pinFingerprint, error) {
	var fp pinFingerprint
	f, err := os.Open(path)
	if err != nil {
		return nil, fp, fmt.Errorf("read pin_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fp, fmt.Errorf("read pin_file: %w", err)
	}
	if fi.Size() > 4096 {
		return nil, fp, fmt.Errorf("pin_file %s is %d bytes; a PIN file holds only the PIN", path, fi.Size())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, fp, fmt.Errorf("read pin_file: %w", err)
	}
	fp = pinFingerprint{sum: sha256.Sum256(b), size: fi.Size(), mtime: fi.ModTime()}
	pin := bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
	if len(pin) == 0 {
		return nil, fp, fmt.Errorf("pin_file %s is empty; write the token's user PIN into it", path)
	}
	return pin, fp, nil
}
