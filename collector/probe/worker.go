package probe

import (
	"bufio"
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
	mode    string
	started time.Time
	stdin   *os.File
	log     *slog.Logger
	ready   bool // a ready event arrived: the library is initialised

	// events carries stdout, one parsed line at a time; closed at EOF.
	events  chan p11.WorkerEvent
	readErr error // why events closed early (bad line); read after close

	exited  chan struct{} // closed once the process is reaped
	exitErr error         // Wait's error; read after exited

	stderr     *tail
	stderrDone chan struct{}

	closeOnce sync.Once
}

// startWorker starts a worker in mode. scrub cleans stderr lines before they
// are logged or kept (it hides a PIN the worker was given).
func startWorker(command []string, env []string, library, mode string, log *slog.Logger, scrub func(string) string) (*worker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start probe worker: stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
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
		mode:       mode,
		started:    start,
		stdin:      inW,
		log:        log.With("worker_pid", cmd.Process.Pid, "worker_mode", mode),
		events:     make(chan p11.WorkerEvent, 4096),
		exited:     make(chan struct{}),
		stderr:     newTail(stderrTailLines),
		stderrDone: make(chan struct{}),
	}
	go w.readStdout(outR)
	go w.readStderr(errR, scrub)
	go func() {
		w.exitErr = cmd.Wait()
		close(w.exited)
	}()
	return w, nil
}

func (w *worker) readStdout(r *os.File) {
	defer close(w.events)
	defer r.Close()
	br := bufio.NewReaderSize(r, 256<<10)
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, line...)
			continue
		}
		if long != nil {
			line = append(long, line...)
			long = nil
		}
		if len(line) > 1 {
			ev, perr := p11.ParseEvent(line)
			if perr != nil {
				w.readErr = perr
				return
			}
			w.events <- ev
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				w.readErr = err
			}
			return
		}
	}
}

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
	w.closeOnce.Do(func() { w.stdin.Close() })
	killGroup(w.cmd)
}

// retire lets an idle worker finish: stdin closes, the worker finalises the
// library and exits; if it has not within grace, its group is killed. It
// does not block.
func (w *worker) retire(grace time.Duration) {
	w.closeOnce.Do(func() { w.stdin.Close() })
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
