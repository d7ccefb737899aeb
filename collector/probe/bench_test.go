package probe

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// The benchmarks of the "Numbers": a 1,000-token SoftHSM2 fleet
// polled through the probe worker, each beside its reference measured in
// the same run. Run them with
//
//	go test ./collector/probe -run '^$' -bench . -benchtime 20x
//
// The fleet is created once (about 30 s) and cached in $HSM_AGENT_BENCH_DIR,
// or os.TempDir()/hsm-agent-bench-fleet; plain `go test` never creates it.

const benchTokens = 1000

var (
	benchOnce  sync.Once
	benchFleet *pkcs11test.Fleet
	benchErr   error
)

func fleetForBench(b *testing.B) *pkcs11test.Fleet {
	b.Helper()
	benchOnce.Do(func() {
		dir := os.Getenv("HSM_AGENT_BENCH_DIR")
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "hsm-agent-bench-fleet")
		}
		benchFleet, benchErr = pkcs11test.CachedFleet(dir, benchTokens)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchFleet
}

func benchProber(b *testing.B, f *pkcs11test.Fleet) *Prober {
	b.Helper()
	env := f.Env()
	env[workerEnv] = "1"
	p := New(Options{Module: "bench", Library: pkcs11test.SoftHSMLibrary, Env: env, Command: []string{os.Args[0]}}, nil)
	b.Cleanup(func() { p.Close() })
	return p
}

func pollOK(b *testing.B, p *Prober, req Request) {
	res := p.Poll(context.Background(), req)
	if res.ModuleError != "" || len(res.Tokens) != benchTokens || len(res.Unresponsive) != 0 {
		b.Fatalf("poll: %d tokens, module error %q, unresponsive %v", len(res.Tokens), res.ModuleError, res.Unresponsive)
	}
	if req.Fresh && !res.Fresh {
		b.Fatal("cold poll did not run a fresh worker")
	}
}

// BenchmarkWarmPoll: one poll of every token by a worker that is already
// running and initialised (goal <= 60 ms for 1,000 tokens).
func BenchmarkWarmPoll(b *testing.B) {
	p := benchProber(b, fleetForBench(b))
	pollOK(b, p, Request{}) // start and initialise the worker
	b.ResetTimer()
	for b.Loop() {
		pollOK(b, p, Request{})
	}
}

// BenchmarkRawInProcessLoop is the warm poll's reference: the same PKCS#11
// calls over the same tokens, in this process, without a worker.
func BenchmarkRawInProcessLoop(b *testing.B) {
	f := fleetForBench(b)
	b.Setenv("SOFTHSM2_CONF", f.ConfPath)
	ctx := pkcs11.New(pkcs11test.SoftHSMLibrary)
	if ctx == nil {
		b.Fatal("cannot load SoftHSM2")
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		b.Fatal(err)
	}
	defer ctx.Finalize()
	b.ResetTimer()
	for b.Loop() {
		slots, err := ctx.GetSlotList(true)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, s := range slots {
			ti, err := ctx.GetTokenInfo(s)
			if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
				continue
			}
			sh, err := ctx.OpenSession(s, pkcs11.CKF_SERIAL_SESSION)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := ctx.GenerateRandom(sh, 32); err != nil {
				b.Fatal(err)
			}
			ctx.CloseSession(sh)
			n++
		}
		if n != benchTokens {
			b.Fatalf("%d tokens, want %d", n, benchTokens)
		}
	}
}

// BenchmarkColdPoll: one poll in a fresh worker, process start and
// C_Initialize included (goal <= 200 ms for 1,000 tokens).
func BenchmarkColdPoll(b *testing.B) {
	p := benchProber(b, fleetForBench(b))
	pollOK(b, p, Request{Fresh: true})
	b.ResetTimer()
	for b.Loop() {
		pollOK(b, p, Request{Fresh: true})
	}
}

// BenchmarkPkcs11ToolList is the cold poll's reference: `pkcs11-tool -L`
// (load, C_Initialize, list every token) over the same fleet.
func BenchmarkPkcs11ToolList(b *testing.B) {
	f := fleetForBench(b)
	env := append(os.Environ(), "SOFTHSM2_CONF="+f.ConfPath)
	for b.Loop() {
		cmd := exec.Command("pkcs11-tool", "--module", pkcs11test.SoftHSMLibrary, "-L")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("pkcs11-tool -L: %v: %s", err, out)
		}
	}
}
