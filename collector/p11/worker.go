package p11

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/miekg/pkcs11"
)

// Exit codes of a worker.
const (
	ExitOK     = 0 // stdin closed, library finalised
	ExitUsage  = 2 // bad arguments
	ExitInit   = 3 // the library could not load or initialise (a fatal event says why)
	ExitBroken = 4 // the protocol descriptor closed or a request could not be read
)

// ProtocolFD is the descriptor on which a probe worker writes its events
// (design.md: the probe worker speaks its protocol on fd 3; stdout and
// stderr belong to the library).
const ProtocolFD = 3

// randomBytes is how many bytes the random check asks C_GenerateRandom for.
const randomBytes = 32

// maxRequestLine bounds one request line on stdin.
const maxRequestLine = 1 << 20

// Main runs a probe worker on this process's descriptors: requests on
// stdin, events on the protocol descriptor (ProtocolOutput), logs on stderr.
// It returns the process exit code.
func Main(args []string, stderr io.Writer) int {
	out, err := ProtocolOutput()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitUsage
	}
	return WorkerMain(args, os.Stdin, out, stderr)
}

// WorkerMain is the child side of probe isolation, run as
// `hsm-agent probe-worker --library PATH [--mode probe|selftest]`.
// It reads WorkerRequest JSON lines on stdin, writes WorkerEvent JSON lines
// on out, the protocol descriptor (one flush per token, so the parent sees
// progress as it happens), and logs to stderr. It returns the process exit
// code.
//
// In probe mode the library is loaded and C_Initialize'd once, at start; the
// worker then answers requests until stdin closes. In self-test mode it
// answers one request with crypto11 and exits. A PIN only ever arrives on
// stdin, never in args or the environment.
func WorkerMain(args []string, stdin io.Reader, out, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe-worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	library := fs.String("library", "", "path of the PKCS#11 `library` to probe")
	mode := fs.String("mode", ModeProbe, "worker mode: probe or selftest")
	logLevel := fs.String("log-level", "info", "stderr log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return ExitUsage
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "probe-worker: --log-level %q: %v\n", *logLevel, err)
		return ExitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl})).With("library", *library, "mode", *mode)
	if *library == "" {
		log.Error("probe-worker needs --library PATH (the module's PKCS#11 library)")
		return ExitUsage
	}
	ew := newEventWriter(bufio.NewWriterSize(out, 64<<10))
	in := bufio.NewReaderSize(stdin, 64<<10)
	switch *mode {
	case ModeProbe:
		return probeMain(*library, in, ew, log)
	case ModeSelfTest:
		return selfTestMain(*library, in, ew, log)
	default:
		log.Error("unknown --mode; use probe or selftest", "got", *mode)
		return ExitUsage
	}
}

// openModule loads and initialises library; on failure it reports a fatal event.
func openModule(library string, out *eventWriter, log *slog.Logger) (*pkcs11.Ctx, bool) {
	ctx := pkcs11.New(library)
	if ctx == nil {
		msg := loadError(library)
		log.Error("cannot load PKCS#11 library", "err", msg)
		out.event(WorkerEvent{Type: EventFatal, Error: FatalLoadError, Message: "cannot load " + library + ": " + msg})
		out.flush()
		return nil, false
	}
	if err := ctx.Initialize(); err != nil {
		name := ErrorName(err)
		log.Error("C_Initialize failed", "err", name)
		out.event(WorkerEvent{Type: EventFatal, Error: name, Message: "C_Initialize of " + library + " failed: " + name})
		out.flush()
		ctx.Destroy()
		return nil, false
	}
	return ctx, true
}

func probeMain(library string, in *bufio.Reader, out *eventWriter, log *slog.Logger) int {
	start := time.Now()
	ctx, ok := openModule(library, out, log)
	if !ok {
		return ExitInit
	}
	defer func() {
		ctx.Finalize()
		ctx.Destroy()
	}()
	log.Debug("library initialised", "duration", time.Since(start))
	out.event(WorkerEvent{Type: EventReady})
	if out.flush() != nil {
		return ExitBroken
	}
	p := prober{ctx: ctx, out: out, log: log}
	for {
		req, err := readRequest(in)
		if errors.Is(err, io.EOF) {
			return ExitOK
		}
		if err != nil {
			log.Error("cannot read request", "err", err)
			return ExitBroken
		}
		if err := p.probe(req); err != nil {
			log.Error("cannot write results; parent gone?", "err", err)
			return ExitBroken
		}
	}
}

// readRequest reads one JSON line; io.EOF means stdin closed cleanly.
func readRequest(in *bufio.Reader) (WorkerRequest, error) {
	var req WorkerRequest
	for {
		line, err := in.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return req, fmt.Errorf("request line longer than %d bytes", in.Size())
		}
		if len(line) == 0 || (len(line) == 1 && line[0] == '\n') {
			if err != nil {
				return req, err
			}
			continue
		}
		if jerr := unmarshalRequest(line, &req); jerr != nil {
			return req, jerr
		}
		return req, nil
	}
}

type prober struct {
	ctx *pkcs11.Ctx
	out *eventWriter
	log *slog.Logger
	tok Token // reused between tokens
}

// probe answers one probe request: every present token except the skipped,
// each reported as soon as it is done, then a done event.
func (p *prober) probe(req WorkerRequest) error {
	skipSlot := make(map[uint]bool, len(req.SkipSlots))
	for _, s := range req.SkipSlots {
		skipSlot[s] = true
	}
	skipSerial := make(map[string]bool, len(req.SkipSerials))
	for _, s := range req.SkipSerials {
		skipSerial[s] = true
	}
	slots, err := p.ctx.GetSlotList(true)
	if err != nil {
		name := ErrorName(err)
		p.log.Error("C_GetSlotList failed", "err", name)
		p.out.event(WorkerEvent{Type: EventDone, Error: name, Message: "C_GetSlotList failed: " + name})
		return p.out.flush()
	}
	p.out.event(WorkerEvent{Type: EventSlots, SlotList: slots})
	for _, slot := range slots {
		if skipSlot[slot] {
			continue
		}
		if err := p.token(slot, skipSerial); err != nil {
			return err
		}
	}
	p.out.event(WorkerEvent{Type: EventDone})
	return p.out.flush()
}

// announce writes and flushes the begin event of check on slot, so that the
// parent knows what was in flight if the call that follows hangs.
func (p *prober) announce(slot uint, check, serial string) error {
	p.out.begin(slot, check, serial)
	return p.out.flush()
}

// token probes one slot. Before each PKCS#11 call that may block, it
// announces the check (see announce).
func (p *prober) token(slot uint, skipSerial map[string]bool) error {
	t := &p.tok
	*t = Token{SlotID: slot, Flags: t.Flags[:0], Checks: t.Checks[:0]}

	if err := p.announce(slot, CheckTokenInfo, ""); err != nil {
		return err
	}
	t0 := time.Now()
	ti, err := p.ctx.GetTokenInfo(slot)
	d := time.Since(t0)
	if err != nil {
		t.Checks = append(t.Checks, Check{Name: CheckTokenInfo, Duration: d, Error: ErrorName(err)})
	} else {
		t.Serial = cleanText(ti.SerialNumber)
		if skipSerial[t.Serial] {
			return nil
		}
		initialised := ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0
		if !initialised && t.Serial == "" {
			// An empty, uninitialised slot (SoftHSM2 keeps one spare):
			// no device to watch.
			return nil
		}
		t.Label = cleanText(ti.Label)
		t.Model = cleanText(ti.Model)
		t.Manufacturer = cleanText(ti.ManufacturerID)
		t.Firmware = version(ti.FirmwareVersion)
		t.Hardware = version(ti.HardwareVersion)
		t.Flags = appendFlags(t.Flags, ti.Flags)
		t.Checks = append(t.Checks, Check{Name: CheckTokenInfo, OK: true, Duration: d})
	}

	if err := p.announce(slot, CheckSessionOpen, t.Serial); err != nil {
		return err
	}
	t0 = time.Now()
	sh, err := p.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	d = time.Since(t0)
	if err != nil {
		t.Checks = append(t.Checks, Check{Name: CheckSessionOpen, Duration: d, Error: ErrorName(err)})
		p.out.token(t)
		return p.out.flush()
	}
	t.Checks = append(t.Checks, Check{Name: CheckSessionOpen, OK: true, Duration: d})

	if err := p.announce(slot, CheckRandom, t.Serial); err != nil {
		return err
	}
	t0 = time.Now()
	rnd, err := p.ctx.GenerateRandom(sh, randomBytes)
	d = time.Since(t0)
	switch {
	case err != nil:
		t.Checks = append(t.Checks, Check{Name: CheckRandom, Duration: d, Error: ErrorName(err)})
	case len(rnd) != randomBytes:
		t.Checks = append(t.Checks, Check{Name: CheckRandom, Duration: d, Error: fmt.Sprintf("short read: %d of %d bytes", len(rnd), randomBytes)})
	default:
		t.Checks = append(t.Checks, Check{Name: CheckRandom, OK: true, Duration: d})
	}
	// Report the token, then say that C_CloseSession is in flight; both go
	// out in one write.
	p.out.token(t)
	if err := p.announce(slot, CheckSessionClose, t.Serial); err != nil {
		return err
	}
	if err := p.ctx.CloseSession(sh); err != nil {
		p.log.Warn("C_CloseSession failed", "slot", slot, "serial", t.Serial, "err", ErrorName(err))
	}
	return nil
}
