package bundle

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// waitDelay bounds how long a command's output pipes may stay open after it
// exited or was killed (a grandchild holding them).
const waitDelay = 2 * time.Second

// maxParallelCommands bounds how many diagnostic commands run at once.
const maxParallelCommands = 4

// runCommands runs the diagnostic commands concurrently and returns one
// commands/NAME.txt file and one result per command, in config order. Each
// stream keeps at most limit bytes.
func runCommands(ctx context.Context, cmds []config.DiagnosticCommand, limit int64) ([]*content, []CommandResult) {
	files := make([]*content, len(cmds))
	results := make([]CommandResult, len(cmds))
	used := map[string]bool{}
	names := make([]string, len(cmds))
	for i, c := range cmds {
		base := safeName(c.Name)
		if base == "" {
			base = fmt.Sprintf("command-%d", i+1)
		}
		name := base
		for n := 2; used[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		used[name] = true
		names[i] = "commands/" + name + ".txt"
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelCommands)
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			files[i], results[i] = runCommand(ctx, c, names[i], limit)
		}()
	}
	wg.Wait()
	return files, results
}

// runCommand runs one command under its timeout; a command still running
// at the timeout is killed with its whole process group.
func runCommand(ctx context.Context, c config.DiagnosticCommand, file string, limit int64) (*content, CommandResult) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	res := CommandResult{Name: c.Name, File: file, ExitCode: -1, TimeoutMS: timeout.Milliseconds()}
	stdout, stderr := &capture{limit: limit}, &capture{limit: limit}
	started := time.Now()
	var outcome string
	if len(c.Command) == 0 || c.Command[0] == "" {
		res.Error = "no command to run: diagnostics.commands[].command is empty"
		outcome = "not run: " + res.Error
	} else {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		cmd := exec.CommandContext(cctx, c.Command[0], c.Command[1:]...)
		isolate(cmd)
		cmd.WaitDelay = waitDelay
		cmd.Stdout, cmd.Stderr = stdout, stderr
		err := cmd.Run()
		deadline := errors.Is(cctx.Err(), context.DeadlineExceeded)
		cancel()
		var exitErr *exec.ExitError
		switch {
		case err == nil:
			res.ExitCode = 0
			outcome = "exit status 0"
		case ctx.Err() != nil:
			res.Error = "stopped: the bundle build was cancelled (" + ctx.Err().Error() + ")"
			outcome = res.Error
		case deadline:
			res.TimedOut = true
			res.Error = fmt.Sprintf("killed: still running at its %s timeout (set diagnostics.commands[].timeout to allow more)", timeout)
			outcome = res.Error
		case errors.As(err, &exitErr) && exitErr.Exited():
			res.ExitCode = exitErr.ExitCode()
			outcome = "exit status " + strconv.Itoa(res.ExitCode)
		case errors.As(err, &exitErr):
			res.Error = "terminated: " + exitErr.String()
			outcome = res.Error
		default:
			res.Error = "could not run: " + err.Error()
			outcome = res.Error
		}
	}
	elapsed := time.Since(started)
	res.DurationMS = elapsed.Milliseconds()

	var b strings.Builder
	quoted := make([]string, len(c.Command))
	for i, a := range c.Command {
		quoted[i] = strconv.Quote(a)
	}
	fmt.Fprintf(&b, "name:       %s\n", c.Name)
	fmt.Fprintf(&b, "command:    %s\n", strings.Join(quoted, " "))
	fmt.Fprintf(&b, "timeout:    %s\n", timeout)
	fmt.Fprintf(&b, "started_at: %s\n", started.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(&b, "duration:   %s\n", elapsed.Round(time.Millisecond))
	fmt.Fprintf(&b, "result:     %s\n", outcome)
	f := &content{name: file}
	for _, s := range []struct {
		name string
		c    *capture
	}{{"stdout", stdout}, {"stderr", stderr}} {
		fmt.Fprintf(&b, "\n--- %s (%d bytes) ---\n", s.name, s.c.total)
		b.Write(s.c.buf)
		if len(s.c.buf) > 0 && s.c.buf[len(s.c.buf)-1] != '\n' {
			b.WriteByte('\n')
		}
		if d := s.c.total - int64(len(s.c.buf)); d > 0 {
			fmt.Fprintf(&b, "[hsm-agent: %s cut at %d bytes while capturing; %d more bytes not kept]\n", s.name, len(s.c.buf), d)
			f.dropped += d
		}
	}
	f.data = []byte(b.String())
	return f, res
}

// capture keeps the first limit bytes written to it and counts them all.
type capture struct {
	limit int64
	buf   []byte
	total int64
}

func (c *capture) Write(p []byte) (int, error) {
	c.total += int64(len(p))
	if room := c.limit - int64(len(c.buf)); room > 0 {
		c.buf = append(c.buf, p[:min(int64(len(p)), room)]...)
	}
	return len(p), nil
}
