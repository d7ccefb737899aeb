package probe

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
)

// worker is one running probe-worker child.
type worker struct {
	cmd     *exec.Cmd
	started time.Time
	stdin   *os.File
	log     *slog.Logger
	ready   bool // a ready event arrived: the library is initialised

	// events carries the protocol in batches of parsed lines; closed at EOF.
	events  chan []p11.WorkerEvent
	readErr error // why events closed early (bad or overlong line); read after close

	exited  chan struct{} // closed once the process is reaped
	exitErr error         // Wait's error; read after exited

	// stderr keeps the last lines of the worker's stdout and stderr (the
	// library's output and the worker's own log).
	stderr     *tail
	stderrDone chan struct{}

	closeOnce sync.Once
	// quit is closed when the prober stops listening to this worker.
	quit     chan struct{}
	quitOnce sync.Once
}

// stopListening tells the protocol reader that nobody reads events any more.
func (w *worker) stopListening() { w.quitOnce.Do(func() { close(w.quit) }) }

// closeStdin closes the worker's stdin (once): a probe worker then
// finalises the library and exits.
func (w *worker) closeStdin() { w.closeOnce.Do(func() { w.stdin.Close() }) }

// startWorker starts a worker in mode. Its events arrive on a pipe of their
// own (the protocol descriptor, fd 3); its stdout and stderr, which belong to
// the library, share one pipe that feeds the output tail. scrub cleans output
// lines before they are logged or kept (it hides a PIN the worker was given).
func startWorker(command []string, env []string, library, mode string, log *slog.Logger, scrub func(string) string) (*worker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start probe worker: stdin pipe: %w", err)
	}
	outR, outW, err := outputPipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("start probe worker: protocol pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("start probe worker: output pipe: %w", err)
	}
	args := append(append([]string{}, command[1:]...), p11.WorkerArgs(library, mode)...)
	cmd := exec.Command(command[0], args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, errW, errW
	attachProtocol(cmd, outW)
	setProcAttr(cmd)
	start := time.Now()
	err = cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start probe worker %q: %w (set the module's worker command or check the agent binary)", command[0], err)
	}
	w := &worker{
		cmd:        cmd,
		started:    start,
		stdin:      inW,
		log:        log.With("worker_pid", cmd.Process.Pid, "worker_mode", mode),
		events:     make(chan []p11.WorkerEvent, 256),
		exited:     make(chan struct{}),
		stderr:     newTail(stderrTailLines),
		stderrDone: make(chan struct{}),
		quit:       make(chan struct{}),
	}
	go w.readEvents(outR)
	go w.readOutput(errR, scrub)
	go func() {
		w.exitErr = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// readBatchDelay is the pause after each read of a worker's protocol. A
// worker writes a few lines per token; reading them as they come would wake
// this process thousands of times per poll, which costs more than the
// probe itself. The pause bounds the wake-ups to about 1,000 a second; a
// line waits at most this long (deadlines are seconds).
const readBatchDelay = time.Millisecond

// maxEventLine caps one protocol line. The longest real one is the slot
// list (about 12 bytes a slot); a longer line means a broken worker, which
// is killed rather than buffered.
const maxEventLine = 1 << 20

// readEvents parses the worker's protocol into batches of events. Within a
// batch, only the last begin event matters (it says what is in flight), so
// the begin lines before it are not even decoded. The buffer never grows
// past maxEventLine plus one read.
func (w *worker) readEvents(r *os.File) {
	defer close(w.events)
	defer r.Close()
	buf := make([]byte, 256<<10)
	start, end := 0, 0
	for {
		if end == len(buf) {
			switch {
			case start > 0:
				end = copy(buf, buf[start:end])
				start = 0
			case len(buf) > maxEventLine:
				w.readErr = fmt.Errorf("a protocol line longer than %d bytes", maxEventLine)
				return
			default:
				buf = append(buf, make([]byte, len(buf))...) // a line longer than the buffer
			}
		}
		n, err := r.Read(buf[end:])
		end += n
		var batch []p11.WorkerEvent
		var begin []byte
		for {
			i := bytes.IndexByte(buf[start:end], '\n')
			if i < 0 {
				break
			}
			line := buf[start : start+i]
			start += i + 1
			if len(line) == 0 {
				continue
			}
			if bytes.HasPrefix(line, beginPrefix) {
				begin = line
				continue
			}
			ev, perr := p11.ParseEvent(line)
			if perr != nil {
				w.readErr = perr
				return
			}
			batch = append(batch, ev)
			begin = nil
		}
		if begin != nil {
			ev, perr := p11.ParseEvent(begin)
			if perr != nil {
				w.readErr = perr
				return
			}
			batch = append(batch, ev)
		}
		if len(batch) > 0 {
			select {
			case w.events <- batch:
			case <-w.quit:
				return
			}
		}
		if start == end {
			start, end = 0, 0
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				w.readErr = err
			}
			return
		}
		time.Sleep(readBatchDelay)
	}
}

var beginPrefix = []byte(`{"t":"` + p11.EventBegin + `"`)

// maxOutputLine caps one line of library output kept or logged; the rest of
// a longer line is read and dropped, so a library that writes without line
// breaks neither blocks on a full pipe nor grows this process.
const maxOutputLine = 4 << 10

// signalLine finds the signal in the Go runtime's report of a crash:
// "SIGSEGV: segmentation violation" (in C code) or "[signal SIGSEGV:
// segmentation violation code=...]" (in Go code).
var signalLine = regexp.MustCompile(`^(?:\[signal )?(SIG[A-Z]+): `)

// readOutput reads the worker's stdout and stderr into the tail and the
// debug log, line by line, each line cut at maxOutputLine.
func (w *worker) readOutput(r *os.File, scrub func(string) string) {
	defer close(w.stderrDone)
	defer r.Close()
	br := bufio.NewReaderSize(r, maxOutputLine)
	for {
		line, err := br.ReadSlice('\n')
		cut := errors.Is(err, bufio.ErrBufferFull)
		if len(line) > 0 {
			text := strings.TrimRight(string(line), "\r\n")
			if m := signalLine.FindStringSubmatch(text); m != nil {
				w.stderr.setSignal(m[1])
			}
			if cut {
				text += fmt.Sprintf("... (line cut at %d bytes)", maxOutputLine)
			}
			text = scrub(text)
			w.stderr.add(text)
			w.log.Debug("worker output", "line", text)
		}
		for cut {
			_, err = br.ReadSlice('\n')
			cut = errors.Is(err, bufio.ErrBufferFull)
		}
		if err != nil {
			return
		}
	}
}

// send writes one request line.
func (w *worker) send(line []byte) error {
	_, err := w.stdin.Write(line)
	if err != nil {
		return fmt.Errorf("write request to probe worker: %w", err)
	}
	return nil
}

// dead reports whether the process has exited.
func (w *worker) dead() bool {
	select {
	case <-w.exited:
		return true
	default:
		return false
	}
}

// kill kills the worker's process group at once.
func (w *worker) kill() {
	w.stopListening()
	w.closeStdin()
	killGroup(w.cmd)
}

// retire lets an idle worker finish: stdin closes, the worker finalises the
// library and exits; if it has not within grace, its group is killed. It
// does not block.
func (w *worker) retire(grace time.Duration) {
	w.stopListening()
	w.closeStdin()
	go func() {
		select {
		case <-w.exited:
		case <-time.After(grace):
			w.log.Warn("probe worker did not exit after stdin closed; killing it", "grace", grace)
		}
		// Kill the group even after a clean exit: a helper process the
		// library started must not outlive the worker.
		killGroup(w.cmd)
	}()
}

// waitExit waits up to d for the process to be reaped and its output read.
func (w *worker) waitExit(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.exited:
	case <-t.C:
		return false
	}
	select {
	case <-w.stderrDone:
	case <-t.C:
	}
	return true
}

// exitStatus describes how the process ended ("exit status 3",
// "killed by signal SIGABRT"); call after exited is closed.
func (w *worker) exitStatus() string {
	ps := w.cmd.ProcessState
	if ps == nil {
		if w.exitErr != nil {
			return w.exitErr.Error()
		}
		return "unknown exit status"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %s (%s)", signalName(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ps.ExitCode())
}

// stderrTail returns the last lines of output, joined for an error message.
func (w *worker) stderrTail() string {
	lines := w.stderr.lines()
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, " | ")
}

// stderrTailLines is how many output lines a worker keeps for error messages.
const stderrTailLines = 5

// tail keeps the last n lines written to it, and the first fatal signal
// the Go runtime reported among all lines.
type tail struct {
	mu     sync.Mutex
	n      int
	buf    []string
	signal string
}

func (t *tail) setSignal(sig string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.signal == "" {
		t.signal = sig
	}
}

// fatalSignal returns the signal of a crash the Go runtime reported ("SIGSEGV"), or "".
func (t *tail) fatalSignal() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.signal
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) add(line string) {
	if len(line) > 300 {
		line = line[:300] + "..."
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.buf) == t.n {
		copy(t.buf, t.buf[1:])
		t.buf = t.buf[:t.n-1]
	}
	t.buf = append(t.buf, line)
}

func (t *tail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.buf...)
}
