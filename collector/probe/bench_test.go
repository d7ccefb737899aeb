package probe

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// The benchmarks of the "Numbers": a 1,000-token SoftHSM2 fleet
// polled through the probe worker, each beside its reference measured in
// the same run. Run them with
//
//	go test ./collector/probe -run '^$' -bench . -benchtime 20x
//
// On a shared or busy machine, read the Paired benchmarks: they alternate
// poll and reference in each iteration and report the ratio.
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
	raw := openRaw(b, fleetForBench(b))
	for b.Loop() {
		raw.loop(b)
	}
}

// rawModule is SoftHSM2 loaded into the benchmark process (references only;
// the agent itself never does this).
type rawModule struct{ ctx *pkcs11.Ctx }

func openRaw(b *testing.B, f *pkcs11test.Fleet) *rawModule {
	b.Helper()
	b.Setenv("SOFTHSM2_CONF", f.ConfPath)
	ctx := pkcs11.New(pkcs11test.SoftHSMLibrary)
	if ctx == nil {
		b.Fatal("cannot load SoftHSM2")
	}
	if err := ctx.Initialize(); err != nil {
		ctx.Destroy()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx.Finalize()
		ctx.Destroy()
	})
	return &rawModule{ctx: ctx}
}

// loop runs C_GetTokenInfo + C_OpenSession + C_GenerateRandom(32) +
// C_CloseSession over every initialised token.
func (r *rawModule) loop(b *testing.B) {
	slots, err := r.ctx.GetSlotList(true)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, s := range slots {
		ti, err := r.ctx.GetTokenInfo(s)
		if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		sh, err := r.ctx.OpenSession(s, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.ctx.GenerateRandom(sh, 32); err != nil {
			b.Fatal(err)
		}
		r.ctx.CloseSession(sh)
		n++
	}
	if n != benchTokens {
		b.Fatalf("%d tokens, want %d", n, benchTokens)
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
	for b.Loop() {
		toolList(b, f)
	}
}

func toolList(b *testing.B, f *pkcs11test.Fleet) {
	cmd := exec.Command("pkcs11-tool", "--module", pkcs11test.SoftHSMLibrary, "-L")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+f.ConfPath)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("pkcs11-tool -L: %v: %s", err, out)
	}
}

// The paired benchmarks alternate a poll and its reference in every
// iteration and report both and their ratio, so that load from other
// processes on the machine hits both alike.

// BenchmarkPairedWarmVsRaw reports warm-ms, raw-ms and warm/raw.
func BenchmarkPairedWarmVsRaw(b *testing.B) {
	f := fleetForBench(b)
	p := benchProber(b, f)
	raw := openRaw(b, f)
	pollOK(b, p, Request{})
	var warm, ref time.Duration
	for b.Loop() {
		t0 := time.Now()
		pollOK(b, p, Request{})
		t1 := time.Now()
		raw.loop(b)
		warm, ref = warm+t1.Sub(t0), ref+time.Since(t1)
	}
	reportPair(b, "warm", warm, "raw", ref)
}

// BenchmarkPairedColdVsTool reports cold-ms, tool-ms and cold/tool.
func BenchmarkPairedColdVsTool(b *testing.B) {
	f := fleetForBench(b)
	p := benchProber(b, f)
	pollOK(b, p, Request{Fresh: true})
	var cold, ref time.Duration
	for b.Loop() {
		t0 := time.Now()
		pollOK(b, p, Request{Fresh: true})
		t1 := time.Now()
		toolList(b, f)
		cold, ref = cold+t1.Sub(t0), ref+time.Since(t1)
	}
	reportPair(b, "cold", cold, "tool", ref)
}

func reportPair(b *testing.B, name string, d time.Duration, refName string, ref time.Duration) {
	n := float64(b.N)
	b.ReportMetric(float64(d.Milliseconds())/n, name+"-ms")
	b.ReportMetric(float64(ref.Milliseconds())/n, refName+"-ms")
	b.ReportMetric(float64(d)/float64(ref), name+"/"+refName)
	b.ReportMetric(0, "ns/op")
}
