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

	// events carries stdout in batches of parsed lines; closed at EOF.
	events  chan []p11.WorkerEvent
	readErr error // why events closed early (bad line); read after close

	exited  chan struct{} // closed once the process is reaped
	exitErr error         // Wait's error; read after exited

	stderr     *tail
	stderrDone chan struct{}

	closeOnce sync.Once
	// quit is closed when the prober stops listening to this worker.
	quit     chan struct{}
	quitOnce sync.Once
}

// stopListening tells the stdout reader that nobody reads events any more.
func (w *worker) stopListening() { w.quitOnce.Do(func() { close(w.quit) }) }

// closeStdin closes the worker's stdin (once): a probe worker then
// finalises the library and exits.
func (w *worker) closeStdin() { w.closeOnce.Do(func() { w.stdin.Close() }) }

// startWorker starts a worker in mode. scrub cleans stderr lines before they
// are logged or kept (it hides a PIN the worker was given).
func startWorker(command []string, env []string, library, mode string, log *slog.Logger, scrub func(string) string) (*worker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start probe worker: stdin pipe: %w", err)
	}
	outR, outW, err := outputPipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("start probe worker: stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("start probe worker: stderr pipe: %w", err)
	}
	args := append(append([]string{}, command[1:]...), p11.WorkerArgs(library, mode)...)
	cmd := exec.Command(command[0], args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
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
	go w.readStdout(outR)
	go w.readStderr(errR, scrub)
	go func() {
		w.exitErr = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

// readBatchDelay is the pause after each read of a worker's stdout. A
// worker writes a few lines per token; reading them as they come would wake
// this process thousands of times per poll, which costs more than the
// probe itself. The pause bounds the wake-ups to about 1,000 a second; a
// line waits at most this long (deadlines are seconds).
const readBatchDelay = time.Millisecond

// readStdout parses the worker's output into batches of events. Within a
// batch, only the last begin event matters (it says what is in flight), so
// the begin lines before it are not even decoded.
func (w *worker) readStdout(r *os.File) {
	defer close(w.events)
	defer r.Close()
	buf := make([]byte, 256<<10)
	start, end := 0, 0
	for {
		if end == len(buf) {
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			} else {
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

func (w *worker) readStderr(r *os.File, scrub func(string) string) {
	defer close(w.stderrDone)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := scrub(sc.Text())
		w.stderr.add(line)
		w.log.Debug("worker stderr", "line", line)
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

// waitExit waits up to d for the process to be reaped and its stderr read.
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

// stderrTail returns the last stderr lines, joined for an error message.
func (w *worker) stderrTail() string {
	lines := w.stderr.lines()
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, " | ")
}

// stderrTailLines is how many stderr lines a worker keeps for error messages.
const stderrTailLines = 5

// tail keeps the last n lines written to it.
type tail struct {
	mu  sync.Mutex
	n   int
	buf []string
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
