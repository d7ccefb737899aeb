package probe

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// A library that prints a banner at load and a line on stdout and stderr at
// every call: the protocol travels on fd 3, so every token still reports,
// and the library's lines land in the worker's output log.
func TestChattyLibraryKeepsTheProtocol(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3)
	if err := r.faults.SetModule(pkcs11test.FaultChatter, ""); err != nil {
		t.Fatal(err)
	}
	r.set(r.fleet.Tokens[1].Serial, pkcs11test.FaultChatter, "")
	p := r.prober()
	for range 2 { // the fresh worker, then the warm one
		res := r.poll(p, Request{})
		if res.ModuleError != "" {
			t.Fatalf("ModuleError %q with a chatty library, want none", res.ModuleError)
		}
		r.requireAll(res)
	}
	for _, want := range []string{"banner", "hello from C_Initialize", "hello from C_GenerateRandom"} {
		if !strings.Contains(r.logs.String(), want) {
			t.Errorf("the worker output log lacks the library's %q line", want)
		}
	}
}

// A library that writes 64 MiB to stdout without a line break: the
// protocol is untouched and this process reads the flood through a
// bounded buffer (it would otherwise hold the whole "line").
func TestStdoutFloodIsBoundedAndHarmless(t *testing.T) {
	r := newRig(t, 2)
	const flood = 64 << 20
	if err := r.faults.SetModule(pkcs11test.FaultFlood, "67108864"); err != nil {
		t.Fatal(err)
	}
	p := r.prober()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res := r.poll(p, Request{})
	runtime.ReadMemStats(&after)
	if res.ModuleError != "" {
		t.Fatalf("ModuleError %q after a stdout flood, want none (stdout is the library's)", res.ModuleError)
	}
	r.requireAll(res)
	// Generous: everything this process allocated during the poll, far
	// below the flood it read.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > flood/4 {
		t.Errorf("allocated %d MiB while reading a %d MiB flood, want a bounded reader", grew>>20, flood>>20)
	}
	if !strings.Contains(r.logs.String(), "line cut at") {
		t.Error("the flood's first bytes should be logged as one cut line")
	}
}

// A worker that writes a protocol line longer than the cap is killed, and
// the module reports why; the line is never buffered whole.
func TestOverlongProtocolLineKillsWorker(t *testing.T) {
	t.Parallel()
	r := newRig(t, 1)
	r.opts.Timeout = 20 * time.Second
	r.opts.Command = []string{"/bin/sh", "-c", `head -c 8388608 /dev/zero | tr '\0' x >&3; exec sleep 60`, "sh"}
	p := r.prober()
	res := r.poll(p, Request{})
	if !strings.Contains(res.ModuleError, "protocol line longer than") || !strings.Contains(res.ModuleError, "killed") {
		t.Fatalf("ModuleError = %q, want the overlong protocol line named and the worker killed", res.ModuleError)
	}
	if res.Duration >= r.opts.Timeout {
		t.Errorf("the poll waited for the deadline (%s); the overlong line should end it", res.Duration)
	}
}
