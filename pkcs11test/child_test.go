package pkcs11test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/internal/testutil"

	"github.com/miekg/pkcs11"
)

// The tests drive PKCS#11 from child processes (this test binary re-executed
// with childLibEnv set), as the agent does: each test has its own
// SOFTHSM2_CONF, a crash must only kill the child, and a hung call must not
// block the test. The child reads one JSON request per line on stdin and
// writes one JSON response per line on stdout.

const childLibEnv = "PKCS11TEST_CHILD_LIBRARY"

func TestMain(m *testing.M) {
	if lib := os.Getenv(childLibEnv); lib != "" {
		os.Exit(childMain(lib, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type request struct {
	Op   string `json:"op"` // init, finalize, slots, tokens, info, random, login
	Slot uint   `json:"slot,omitempty"`
	PIN  string `json:"pin,omitempty"`
}

type tokenInfo struct {
	Slot     uint   `json:"slot"`
	Serial   string `json:"serial"`
	Label    string `json:"label"`
	Firmware string `json:"firmware"`
	Flags    uint   `json:"flags"`
}

type response struct {
	Err    string      `json:"err,omitempty"` // CKR_ name or other error text
	Slots  []uint      `json:"slots,omitempty"`
	Tokens []tokenInfo `json:"tokens,omitempty"`
}

func childMain(lib string, in io.Reader, out io.Writer) int {
	ctx := pkcs11.New(lib)
	if ctx == nil {
		fmt.Fprintf(os.Stderr, "child: cannot load %s\n", lib)
		return 2
	}
	enc := json.NewEncoder(out)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			fmt.Fprintf(os.Stderr, "child: bad request: %v\n", err)
			return 2
		}
		var resp response
		var err error
		switch req.Op {
		case "init":
			err = ctx.Initialize()
		case "finalize":
			err = ctx.Finalize()
		case "slots":
			resp.Slots, err = ctx.GetSlotList(true)
		case "tokens":
			resp.Slots, err = ctx.GetSlotList(true)
			for _, s := range resp.Slots {
				if err != nil {
					break
				}
				var ti pkcs11.TokenInfo
				ti, err = ctx.GetTokenInfo(s)
				resp.Tokens = append(resp.Tokens, tokenInfo{Slot: s, Serial: ti.SerialNumber, Label: ti.Label,
					Firmware: fmt.Sprintf("%d.%d", ti.FirmwareVersion.Major, ti.FirmwareVersion.Minor), Flags: ti.Flags})
			}
		case "info":
			var ti pkcs11.TokenInfo
			ti, err = ctx.GetTokenInfo(req.Slot)
			resp.Tokens = []tokenInfo{{Slot: req.Slot, Serial: ti.SerialNumber, Label: ti.Label,
				Firmware: fmt.Sprintf("%d.%d", ti.FirmwareVersion.Major, ti.FirmwareVersion.Minor), Flags: ti.Flags}}
		case "random", "login":
			var sh pkcs11.SessionHandle
			sh, err = ctx.OpenSession(req.Slot, pkcs11.CKF_SERIAL_SESSION)
			if err == nil {
				if req.Op == "random" {
					var b []byte
					b, err = ctx.GenerateRandom(sh, 32)
					if err == nil && len(b) != 32 {
						err = fmt.Errorf("got %d random bytes, want 32", len(b))
					}
				} else if err = ctx.Login(sh, pkcs11.CKU_USER, req.PIN); err == nil {
					err = ctx.Logout(sh)
				}
				if cerr := ctx.CloseSession(sh); err == nil {
					err = cerr
				}
			}
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		resp.Err = p11.ErrorName(err)
		if err := enc.Encode(resp); err != nil {
			return 2
		}
	}
	return 0
}

var errTimeout = errors.New("no response before the timeout")

// child is a running child process with a PKCS#11 library loaded.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    chan response
	stderr *lockedBuffer
	exited chan struct{}
	err    error // from cmd.Wait, valid after exited is closed
}

type lockedBuffer = testutil.SyncBuffer

// startChild starts a child that loads lib with the given environment.
func startChild(t *testing.T, lib string, envs ...map[string]string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOFTHSM2_CONF=") && !strings.HasPrefix(kv, "HSMFAULT_") {
			env = append(env, kv)
		}
	}
	env = append(env, childLibEnv+"="+lib)
	for _, e := range envs {
		for k, v := range e {
			env = append(env, k+"="+v)
		}
	}
	cmd.Env = env
	c := &child{t: t, cmd: cmd, out: make(chan response, 16), stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.in = in
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		dec := json.NewDecoder(outp)
		for {
			var r response
			if err := dec.Decode(&r); err != nil {
				break
			}
			c.out <- r
		}
		c.err = cmd.Wait()
		close(c.exited)
		close(c.out)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	return c
}

// send writes a request without waiting for the answer.
func (c *child) send(req request) {
	c.t.Helper()
	b, _ := json.Marshal(req)
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("write to child: %v (stderr: %s)", err, c.stderr.String())
	}
}

// recv waits up to timeout for the next answer.
func (c *child) recv(timeout time.Duration) (response, error) {
	select {
	case r, ok := <-c.out:
		if !ok {
			return response{}, fmt.Errorf("child exited: %v (stderr: %s)", c.err, c.stderr.String())
		}
		return r, nil
	case <-time.After(timeout):
		return response{}, errTimeout
	}
}

// do sends a request and returns its answer, failing the test if none
// comes within 20 s.
func (c *child) do(req request) response {
	c.t.Helper()
	c.send(req)
	r, err := c.recv(20 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: %v", req.Op, err)
	}
	return r
}

// ok is do that also fails the test on a PKCS#11 error.
func (c *child) ok(req request) response {
	c.t.Helper()
	r := c.do(req)
	if r.Err != "" {
		c.t.Fatalf("%s (slot %d): %s", req.Op, req.Slot, r.Err)
	}
	return r
}

// waitSignal waits for the child to exit and returns the signal that killed it.
func (c *child) waitSignal() syscall.Signal {
	c.t.Helper()
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		c.t.Fatal("child still running")
	}
	var ee *exec.ExitError
	if !errors.As(c.err, &ee) {
		c.t.Fatalf("child exit: %v, want killed by a signal", c.err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() {
		c.t.Fatalf("child exited with %v, want killed by a signal", c.err)
	}
	return ws.Signal()
}

// serialSlots maps serial -> slot from a "tokens" answer, leaving out
// SoftHSM2's spare uninitialised slot (empty serial).
func serialSlots(r response) map[string]uint {
	m := make(map[string]uint)
	for _, t := range r.Tokens {
		if t.Serial != "" {
			m[t.Serial] = t.Slot
		}
	}
	return m
}
