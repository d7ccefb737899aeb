package probe

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// Defaults for zero Options fields.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultReinitInterval   = 5 * time.Minute
	DefaultSelftestInterval = 10 * time.Minute
)

// retireGrace is how long an idle worker that is being replaced may take to
// C_Finalize and exit after its stdin closes, before its group is killed.
const retireGrace = 2 * time.Second

// minRetryBudget is the least time left in the poll's budget for which a
// fresh worker is still started to probe the tokens a hung one did not reach.
const minRetryBudget = 50 * time.Millisecond

// Prober polls one PKCS#11 module through probe-worker child processes. It
// keeps one worker warm between polls and replaces it after a hang, a crash,
// every ReinitInterval and on Request.Fresh. Poll calls are serialised.
//
// Deadline budget: each token is charged for its own time. A worker gets
// Options.Timeout to load the library, initialise and list the slots, and
// each token gets Timeout from when the worker begins it. A token that
// hangs past its Timeout is reported Unresponsive, one whose call crashes
// the worker Crashed; either way a fresh worker told to skip it (and the
// tokens already reported) probes the rest. No token is begun and no fresh
// worker started after twice Timeout from the start, so a token probe never
// takes more than 3×Timeout (plus process start-up and kill slack); a poll
// with one hung token returns at its Timeout plus the time the fresh worker
// needs for the remaining tokens. Then self-tests run in parallel, each in
// its own short-lived worker, with Timeout plus the C_GetTokenInfo time
// spent finding the token (see startSelfTests).
type Prober struct {
	opts    Options
	log     *slog.Logger
	command []string
	cmdErr  error
	env     []string

	closeCtx    context.Context
	closeCancel context.CancelFunc

	mu     sync.Mutex // serialises Poll and Close; guards all below
	closed bool
	w      *worker
	// slotSerial is the serial last seen in each slot; it names a token
	// that hangs (or fails C_GetTokenInfo) before reporting its serial.
	slotSerial map[uint]string
	// lastFlags are the flags each serial reported last.
	lastFlags map[string][]string
	// silentSlots are the slots the last complete poll listed but that
	// reported no token (an empty, uninitialised slot).
	silentSlots map[uint]bool
	// hungSlots are the slots that hung in the previous poll: a hang that
	// goes on is logged once, at warn, then at debug level; while any is
	// set, self-tests wait.
	hungSlots map[uint]bool
	selftests map[string]*selftestState
}

// New returns a prober for one module; it starts no process until the
// first Poll. A nil logger discards logs.
func New(opts Options, logger *slog.Logger) *Prober {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.ReinitInterval <= 0 {
		opts.ReinitInterval = DefaultReinitInterval
	}
	if opts.SelftestInterval <= 0 {
		opts.SelftestInterval = DefaultSelftestInterval
	}
	p := &Prober{
		opts:        opts,
		log:         logger.With("module", opts.Module),
		slotSerial:  make(map[uint]string),
		lastFlags:   make(map[string][]string),
		silentSlots: make(map[uint]bool),
		selftests:   make(map[string]*selftestState),
	}
	for _, k := range opts.Known {
		p.slotSerial[k.SlotID] = k.Serial
	}
	p.closeCtx, p.closeCancel = context.WithCancel(context.Background())
	if len(opts.Command) > 0 {
		p.command = slices.Clone(opts.Command)
	} else if exe, err := os.Executable(); err != nil {
		p.cmdErr = fmt.Errorf("cannot find the agent binary to run probe-worker: %w", err)
	} else {
		p.command = []string{exe, "probe-worker"}
	}
	p.env = os.Environ()
	for _, k := range slices.Sorted(maps.Keys(opts.Env)) {
		p.env = append(p.env, k+"="+opts.Env[k])
	}
	return p
}

// Poll probes every token of the module once. It returns within
// 2×Options.Timeout (see Prober for the budget), or sooner when ctx ends.
func (p *Prober) Poll(ctx context.Context, req Request) Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	res := Result{Module: p.opts.Module, Start: start}
	defer func() { res.Duration = time.Since(start) }()
	if p.closed {
		res.ModuleError = "prober is closed"
		return res
	}
	if p.cmdErr != nil {
		res.ModuleError = p.cmdErr.Error()
		return res
	}
	if p.opts.Library == "" {
		res.ModuleError = fmt.Sprintf("module %q has no library path; set modules[].library in the config", p.opts.Module)
		return res
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.closeCtx, cancel)
	defer stop()

	p.probeTokens(ctx, req.Fresh, start, &res)
	p.finishSelfTests(p.startSelfTests(ctx, req.SelfTests, &res), &res)
	res.Duration = time.Since(start)
	return res
}

// Close stops the warm worker (it finalises the library; it is killed if it
// does not exit within 2 s) and makes further polls fail. A running Poll is
// cancelled.
func (p *Prober) Close() error {
	p.closeCancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.w != nil {
		w := p.w
		p.w = nil
		w.stopListening()
		w.closeStdin()
		if !w.waitExit(retireGrace) {
			p.log.Warn("probe worker did not exit after stdin closed; killing it")
		}
		killGroup(w.cmd)
		w.waitExit(retireGrace)
	}
	return nil
}

// inflight is what a worker announced it was doing last; since is when
// the worker began that slot (the token's own budget starts there).
type inflight struct {
	valid  bool
	slot   uint
	check  string
	serial string
	since  time.Time
}

type outcomeKind int

const (
	outDone outcomeKind = iota
	outDeadline
	outCancelled
	outExited
	outFatal
	outSlotList
	outBudget // the poll's budget ended before the worker began a token
)

type outcome struct {
	kind     outcomeKind
	inflight inflight
	msg      string
	// loadFailed: the worker could not load the library (outFatal only).
	loadFailed bool
	// slots is the worker's slot list, nil if it did not get that far.
	slots []uint
}

// probeTokens runs the token probe into res. A token that hangs past its
// own budget (Timeout from when the worker began it) or crashes the worker
// is charged for it: it is reported unresponsive or crashed, and a fresh
// worker told to skip it probes the tokens not yet reported.
func (p *Prober) probeTokens(ctx context.Context, fresh bool, start time.Time, res *Result) {
	timeout := p.opts.Timeout
	hard := start.Add(2 * timeout)
	seen := make(map[string]bool)
	var skip p11.WorkerRequest
	complete := false
	defer func() { p.afterPoll(res, complete) }()

	for attempt := 0; ; attempt++ {
		isFresh := false
		if fresh || p.w == nil || p.w.dead() || time.Since(p.w.started) >= p.opts.ReinitInterval {
			if err := p.replaceWorker(); err != nil {
				res.ModuleError = err.Error()
				return
			}
			isFresh = true
		}
		if attempt == 0 {
			res.Fresh = isFresh
		}
		w := p.w
		o := p.runAttempt(ctx, w, hard, skip, res, seen)
		var out Unresponsive
		switch o.kind {
		case outDone:
			complete = attempt == 0
			if complete {
				p.rememberSilent(o.slots, res)
			}
			return
		case outSlotList, outFatal:
			res.ModuleError, res.LoadFailed = o.msg, o.loadFailed
			p.dropWorker(false) // the next poll initialises afresh
			return
		case outCancelled:
			p.dropWorker(true)
			res.ModuleError = fmt.Sprintf("poll cancelled (%v) %s", context.Cause(ctx), describeInflight(o.inflight, w))
			return
		case outExited:
			p.dropWorker(false)
			if !o.inflight.valid || w.readErr != nil {
				res.ModuleError = p.exitMessage(w, o, hard)
				return
			}
			out = p.crashed(ctx, w, o, hard, res)
		case outBudget:
			p.dropWorker(true)
			res.ModuleError = fmt.Sprintf("probe budget (2 x probe_timeout = %s) used up by slow, unresponsive or crashed tokens before slot %d; it and the slots after it were not probed",
				2*timeout, o.inflight.slot)
			return
		case outDeadline:
			p.dropWorker(true)
			if !o.inflight.valid {
				res.ModuleError = fmt.Sprintf("probe worker gave no answer within %s %s; killed it", roundMS(time.Since(start)), describeInflight(o.inflight, w))
				return
			}
			out = p.unresponsive(ctx, o, res)
		}
		left := p.skipAndLeft(out, o.slots, &skip, res, seen)
		if len(left) == 0 {
			return
		}
		if time.Until(hard) < minRetryBudget {
			res.ModuleError = fmt.Sprintf("probe budget (2 x probe_timeout = %s) used up after %d unresponsive or crashed token(s); slots %v were not probed",
				2*timeout, len(res.Unresponsive)+len(res.Crashed), left)
			return
		}
		fresh = true
	}
}

// unresponsive records the token in flight at its deadline.
func (p *Prober) unresponsive(ctx context.Context, o outcome, res *Result) Unresponsive {
	u := Unresponsive{SlotID: o.inflight.slot, Serial: o.inflight.serial, Check: o.inflight.check}
	if u.Serial == "" {
		u.Serial = p.slotSerial[u.SlotID]
	}
	level := slog.LevelWarn
	if p.hungSlots[u.SlotID] {
		level = slog.LevelDebug // still hung: said already
	}
	p.log.Log(ctx, level, "token did not answer within its probe_timeout; killed the worker",
		"slot", u.SlotID, "serial", u.Serial, "check", u.Check, "timeout", p.opts.Timeout)
	res.Unresponsive = append(res.Unresponsive, u)
	return u
}

// crashed records the token in flight when the worker died: its call
// crashed the library, the token's own fault.
func (p *Prober) crashed(ctx context.Context, w *worker, o outcome, hard time.Time, res *Result) Unresponsive {
	u := Unresponsive{SlotID: o.inflight.slot, Serial: o.inflight.serial, Check: o.inflight.check}
	if u.Serial == "" {
		u.Serial = p.slotSerial[u.SlotID]
	}
	cause := p.crashCause(w, hard)
	reason := fmt.Sprintf("%s in %s on slot %d; the probe worker crashed", cause, p11.CheckFunction(u.Check), u.SlotID)
	p.log.Log(ctx, slog.LevelWarn, "a token's call crashed the probe worker; probing the others in a fresh one",
		"slot", u.SlotID, "serial", u.Serial, "check", u.Check, "err", reason, "output", w.stderrTail())
	res.Crashed = append(res.Crashed, Crashed{SlotID: u.SlotID, Serial: u.Serial, Check: u.Check, Reason: reason})
	return u
}

// crashCause names how a dead worker ended: the signal that killed it
// ("SIGABRT"), the signal the Go runtime reported for a crash in C code
// ("SIGSEGV"), else its exit status.
func (p *Prober) crashCause(w *worker, hard time.Time) string {
	if !w.waitExit(min(time.Second, max(time.Until(hard), 100*time.Millisecond))) {
		w.kill()
		return "the worker closed its protocol but did not exit; killed it"
	}
	if ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return signalName(ws.Signal())
	}
	if sig := w.stderr.fatalSignal(); sig != "" {
		return sig
	}
	return w.exitStatus()
}

// skipAndLeft adds out (a token that hung or crashed) and the tokens
// already reported to skip, and returns the listed slots after out's that
// the worker never reached.
func (p *Prober) skipAndLeft(out Unresponsive, slots []uint, skip *p11.WorkerRequest, res *Result, seen map[string]bool) []uint {
	if out.Check == p11.CheckSessionClose {
		// It reported, then hung or crashed closing its session: it counts
		// as what happened last.
		res.Tokens = slices.DeleteFunc(res.Tokens, func(t p11.Token) bool { return t.SlotID == out.SlotID })
	}
	skip.SkipSlots = append(skip.SkipSlots, out.SlotID)
	if out.Serial != "" {
		skip.SkipSerials = append(skip.SkipSerials, out.Serial)
		seen[out.Serial] = true
	}
	for _, t := range res.Tokens {
		if t.Serial != "" {
			seen[t.Serial] = true
			skip.SkipSerials = append(skip.SkipSerials, t.Serial)
		} else {
			skip.SkipSlots = append(skip.SkipSlots, t.SlotID)
		}
	}
	skip.SkipSlots = dedupe(skip.SkipSlots)
	skip.SkipSerials = dedupe(skip.SkipSerials)
	var left []uint
	if i := slices.Index(slots, out.SlotID); i >= 0 {
		for _, s := range slots[i+1:] {
			if !p.silentSlots[s] && !slices.Contains(skip.SkipSlots, s) {
				left = append(left, s)
			}
		}
	}
	return left
}

// runAttempt sends one probe request to w and reads its events into res
// until the request is done, a deadline passes, ctx ends or w exits. The
// worker has Timeout (within hard) to load, initialise and list slots, then
// each token has Timeout from when the worker begins it; no token is begun
// after hard.
// Tokens whose serial is in seen (reported by an earlier worker of this
// poll) are dropped; duplicates within one worker's answer are kept.
func (p *Prober) runAttempt(ctx context.Context, w *worker, hard time.Time, req p11.WorkerRequest, res *Result, seen map[string]bool) outcome {
	var o outcome
	line, err := json.Marshal(req)
	if err != nil {
		return outcome{kind: outSlotList, msg: fmt.Sprintf("encode probe request: %v", err)}
	}
	if err := w.send(append(line, '\n')); err != nil {
		o.kind = outExited
		return o
	}
	// Loading, initialising and listing slots get Timeout, within hard; a
	// token begun before hard gets its whole Timeout.
	timer := time.NewTimer(min(p.opts.Timeout, time.Until(hard)))
	defer timer.Stop()
	for {
		select {
		case batch, ok := <-w.events:
			if !ok {
				o.kind = outExited
				return o
			}
			for _, ev := range batch {
				switch ev.Type {
				case p11.EventReady:
					w.ready = true
				case p11.EventFatal:
					return outcome{kind: outFatal, msg: ev.Message, loadFailed: ev.Error == p11.FatalLoadError}
				case p11.EventSlots:
					o.slots = ev.SlotList
				case p11.EventBegin:
					since := o.inflight.since
					if !o.inflight.valid || o.inflight.slot != ev.Slot {
						since = time.Now() // a new token: its own budget
						if since.After(hard) {
							o.kind, o.inflight = outBudget, inflight{valid: true, slot: ev.Slot, check: ev.Check, serial: ev.Serial}
							return o
						}
						timer.Reset(p.opts.Timeout)
					}
					o.inflight = inflight{valid: true, slot: ev.Slot, check: ev.Check, serial: ev.Serial, since: since}
				case p11.EventToken:
					o.inflight.valid = false
					if ev.Token == nil {
						continue
					}
					if ev.Token.Serial != "" && seen[ev.Token.Serial] {
						continue // reported by an earlier worker of this poll
					}
					res.Tokens = append(res.Tokens, *ev.Token)
				case p11.EventDone:
					if ev.Error != "" {
						return outcome{kind: outSlotList, msg: ev.Message}
					}
					o.kind = outDone
					return o
				}
			}
		case <-timer.C:
			o.kind = outDeadline
			return o
		case <-ctx.Done():
			o.kind = outCancelled
			return o
		}
	}
}

// replaceWorker retires the current worker (if any) and starts a fresh one.
func (p *Prober) replaceWorker() error {
	if p.w != nil && p.w.dead() {
		p.log.Warn("probe worker exited between polls; starting a fresh one",
			"err", p.w.exitStatus(), "stderr", p.w.stderrTail())
	}
	if p.w != nil {
		p.w.retire(retireGrace)
		p.w = nil
	}
	w, err := startWorker(p.command, p.env, p.opts.Library, p11.ModeProbe, p.log, scrubPINs)
	if err != nil {
		return err
	}
	p.w = w
	return nil
}

// dropWorker forgets the current worker, killing it at once if kill is set
// (a hung worker) or else after a grace period.
func (p *Prober) dropWorker(kill bool) {
	if p.w == nil {
		return
	}
	if kill {
		p.w.kill()
	} else {
		p.w.retire(retireGrace)
	}
	p.w = nil
}

// exitMessage describes a worker that stopped mid-poll outside any token
// (or wrote bad output). The output tail is quoted unless the Go runtime
// reported the crash: its register dump is logged, never the reason.
func (p *Prober) exitMessage(w *worker, o outcome, hard time.Time) string {
	if w.readErr != nil {
		w.kill()
		return fmt.Sprintf("probe worker wrote bad output (%v) %s; killed it", w.readErr, describeInflight(o.inflight, w))
	}
	msg := fmt.Sprintf("probe worker crashed (%s) %s", p.crashCause(w, hard), describeInflight(o.inflight, w))
	t := w.stderrTail()
	if t != "" && w.stderr.fatalSignal() == "" {
		msg += "; last output: " + t
	}
	p.log.Error("probe worker crashed", "err", msg, "output", t)
	return msg
}

// describeInflight says what a worker was doing, for error messages.
func describeInflight(in inflight, w *worker) string {
	switch {
	case in.valid && in.serial != "":
		return fmt.Sprintf("while probing slot %d (serial %s, check %s)", in.slot, in.serial, in.check)
	case in.valid:
		return fmt.Sprintf("while probing slot %d (check %s)", in.slot, in.check)
	case w != nil && !w.ready:
		return "while loading the library and running C_Initialize"
	default:
		return "outside any token (in C_GetSlotList or between tokens)"
	}
}

// afterPoll remembers serials and flags for the next polls and fills the
// serial of tokens whose C_GetTokenInfo failed from the slot's last serial.
func (p *Prober) afterPoll(res *Result, complete bool) {
	present := make(map[string]bool, len(res.Tokens))
	for _, t := range res.Tokens {
		present[t.Serial] = true
	}
	for i := range res.Tokens {
		t := &res.Tokens[i]
		if t.Serial != "" || tokenInfoOK(t) {
			continue
		}
		if s := p.slotSerial[t.SlotID]; s != "" && !present[s] {
			t.Serial = s
			present[s] = true
		}
	}
	if complete {
		// A complete poll rebuilds the memory, so it cannot grow forever.
		clear(p.slotSerial)
		clear(p.lastFlags)
	}
	for _, t := range res.Tokens {
		if t.Serial == "" {
			continue
		}
		p.slotSerial[t.SlotID] = t.Serial
		if tokenInfoOK(&t) {
			p.lastFlags[t.Serial] = t.Flags
		}
	}
	slices.SortStableFunc(res.Tokens, func(a, b p11.Token) int { return cmp.Compare(a.SlotID, b.SlotID) })
	hung := make(map[uint]bool, len(res.Unresponsive))
	for _, u := range res.Unresponsive {
		hung[u.SlotID] = true
	}
	for slot := range p.hungSlots {
		if !hung[slot] {
			p.log.Info("token answers again after a hang", "slot", slot)
		}
	}
	p.hungSlots = hung
}

// rememberSilent records which listed slots reported no token.
func (p *Prober) rememberSilent(slots []uint, res *Result) {
	clear(p.silentSlots)
	for _, s := range slots {
		p.silentSlots[s] = true
	}
	for _, t := range res.Tokens {
		delete(p.silentSlots, t.SlotID)
	}
}

func tokenInfoOK(t *p11.Token) bool {
	for _, c := range t.Checks {
		if c.Name == p11.CheckTokenInfo {
			return c.OK
		}
	}
	return false
}

func dedupe[T comparable](s []T) []T {
	seen := make(map[T]bool, len(s))
	return slices.DeleteFunc(s, func(v T) bool {
		if seen[v] {
			return true
		}
		seen[v] = true
		return false
	})
}

func roundMS(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
