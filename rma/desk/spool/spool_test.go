package spool_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/spool"
)

func newSpool(t *testing.T) *spool.Desk {
	t.Helper()
	d, err := spool.New(config.Desk{Name: "spool", Type: config.DeskSpool, Dir: filepath.Join(t.TempDir(), "out")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// writeBundle writes a bundle file of n random bytes and returns its path.
func writeBundle(t *testing.T, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	p := filepath.Join(t.TempDir(), "SN1-20260301T120000Z.tar.gz")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

func message(t *testing.T, caseID string, seq int, bundlePath string, withhold bool) desk.Message {
	t.Helper()
	ev := rma.DeskEvent{Event: rma.EventOpened, Sequence: seq, Case: rma.Case{ID: caseID, Serial: "SN1", Summary: "hsm-a is missing", Severity: 2}}
	payload, _ := json.Marshal(ev)
	row := rma.Delivery{CaseID: caseID, Seq: seq, Desk: "spool", IdempotencyKey: rma.IdempotencyKey(caseID, seq),
		Payload: payload, BundlePath: bundlePath, WithholdBundle: withhold}
	m, err := desk.NewMessage(row, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestSpoolWritesEventAndBundle(t *testing.T) {
	t.Parallel()
	d := newSpool(t)
	bundle, content := writeBundle(t, 300<<10)
	ticket, retryable, err := d.Send(context.Background(), message(t, "c-0001", 1, bundle, false))
	if err != nil || retryable {
		t.Fatalf("Send: %v (retryable %v)", err, retryable)
	}
	if ticket != "c-0001-1.json" {
		t.Errorf("ticket %q, want the file name c-0001-1.json", ticket)
	}
	want := []string{"c-0001-1-SN1-20260301T120000Z.tar.gz", "c-0001-1.json"}
	if got := listDir(t, d.Dir()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("spool holds %v, want %v (and no temporary file)", got, want)
	}
	got, err := os.ReadFile(filepath.Join(d.Dir(), want[0]))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("bundle file differs from the bundle (%v)", err)
	}
	raw, err := os.ReadFile(filepath.Join(d.Dir(), want[1]))
	if err != nil {
		t.Fatal(err)
	}
	var ev rma.DeskEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("event file is not JSON: %v", err)
	}
	sum := sha256.Sum256(content)
	if ev.Event != rma.EventOpened || ev.Sequence != 1 || ev.Case.ID != "c-0001" || ev.SentAt == "" ||
		ev.Bundle == nil || ev.Bundle.Name != "SN1-20260301T120000Z.tar.gz" || ev.Bundle.SHA256 != hex.EncodeToString(sum[:]) ||
		ev.Bundle.Size != int64(len(content)) || ev.Bundle.ContentBase64 != "" {
		t.Errorf("event file: %+v", ev)
	}
	if info, _ := os.Stat(filepath.Join(d.Dir(), want[1])); info.Mode().Perm() != 0o640 {
		t.Errorf("event file mode %v, want 0640", info.Mode().Perm())
	}
}

func TestSpoolResendOverwritesAndWithheldHasNoFile(t *testing.T) {
	t.Parallel()
	d := newSpool(t)
	bundle, _ := writeBundle(t, 1000)
	for range 3 {
		if _, _, err := d.Send(context.Background(), message(t, "c-1", 2, bundle, false)); err != nil {
			t.Fatal(err)
		}
	}
	if got := listDir(t, d.Dir()); len(got) != 2 {
		t.Errorf("three sends of one event left %v, want one event and one bundle file", got)
	}
	if _, _, err := d.Send(context.Background(), message(t, "c-2", 1, bundle, true)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.Dir(), "c-2-1-SN1-20260301T120000Z.tar.gz")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a withheld bundle was written (%v)", err)
	}
	raw, _ := os.ReadFile(filepath.Join(d.Dir(), "c-2-1.json"))
	var ev rma.DeskEvent
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Bundle == nil || !ev.Bundle.Withheld || ev.Bundle.SHA256 == "" {
		t.Errorf("withheld event: %s (%v)", raw, err)
	}
}

// TestSpoolFilesAreAtomic rewrites one event with a large, changing bundle
// while a reader keeps reading: the reader must only ever see complete
// files (the event parses; the bundle matches a sha256 that was written).
func TestSpoolFilesAreAtomic(t *testing.T) {
	t.Parallel()
	d := newSpool(t)
	const rounds = 20
	sums := sync.Map{}
	var bundles []string
	for range rounds {
		p, b := writeBundle(t, 256<<10)
		s := sha256.Sum256(b)
		sums.Store(hex.EncodeToString(s[:]), true)
		bundles = append(bundles, p)
	}
	// every bundle has the same base name, so each send overwrites the same files
	done := make(chan struct{})
	var reads, bad int
	var readerErr error
	go func() {
		defer close(done)
		evFile := filepath.Join(d.Dir(), "c-9-1.json")
		bFile := filepath.Join(d.Dir(), "c-9-1-SN1-20260301T120000Z.tar.gz")
		for {
			if raw, err := os.ReadFile(evFile); err == nil {
				reads++
				var ev rma.DeskEvent
				if json.Unmarshal(raw, &ev) != nil {
					bad++
					readerErr = errors.New("partial event file: " + string(raw[:min(len(raw), 80)]))
				}
			}
			if b, err := os.ReadFile(bFile); err == nil {
				reads++
				s := sha256.Sum256(b)
				if _, ok := sums.Load(hex.EncodeToString(s[:])); !ok {
					bad++
					readerErr = errors.New("partial bundle file")
				}
			}
			if _, err := os.Stat(filepath.Join(d.Dir(), "stop")); err == nil {
				return
			}
		}
	}()
	for i := range rounds {
		if _, _, err := d.Send(context.Background(), message(t, "c-9", 1, bundles[i], false)); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(d.Dir(), "stop"), nil, 0o600)
	<-done
	if bad > 0 {
		t.Fatalf("reader saw %d incomplete files in %d reads: %v", bad, reads, readerErr)
	}
	if reads == 0 {
		t.Fatal("reader read nothing; the test proves nothing")
	}
	for _, n := range listDir(t, d.Dir()) {
		if strings.Contains(n, ".tmp-") {
			t.Errorf("temporary file %s left behind", n)
		}
	}
}

func TestSpoolNamesStayInTheDirectory(t *testing.T) {
	t.Parallel()
	d := newSpool(t)
	bundle, _ := writeBundle(t, 10)
	ticket, _, err := d.Send(context.Background(), message(t, "../../etc/x", 1, bundle, false))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ticket, "/") || strings.HasPrefix(ticket, ".") {
		t.Errorf("ticket %q escapes the spool directory", ticket)
	}
	if _, err := os.Stat(filepath.Join(d.Dir(), ticket)); err != nil {
		t.Errorf("event not in the spool directory: %v", err)
	}
	if spool.FileBase("a/b c", 3) != "a_b_c-3" || spool.BundleFile("x", 1, "../../b.tgz") != "x-1-b.tgz" {
		t.Errorf("FileBase %q, BundleFile %q", spool.FileBase("a/b c", 3), spool.BundleFile("x", 1, "../../b.tgz"))
	}
}

func TestSpoolErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := spool.New(config.Desk{Name: "spool", Type: config.DeskSpool, Dir: filepath.Join(file, "sub")}, nil)
	if err == nil || !strings.Contains(err.Error(), `desk "spool"`) {
		t.Errorf("unusable dir: %v", err)
	}

	d := newSpool(t)
	_, retryable, err := d.Send(context.Background(), desk.Message{Body: []byte("not json")})
	if err == nil || retryable || desk.ReasonOf(err) != desk.ReasonInvalid {
		t.Errorf("bad body: %v, retryable %v; want a final invalid error", err, retryable)
	}
	// The directory vanished (e.g. unmounted): retryable, a write error.
	if err := os.RemoveAll(d.Dir()); err != nil {
		t.Fatal(err)
	}
	_, retryable, err = d.Send(context.Background(), message(t, "c-1", 1, "", false))
	if err == nil || !retryable || desk.ReasonOf(err) != desk.ReasonWrite {
		t.Errorf("gone dir: %v, retryable %v; want a retryable write_error", err, retryable)
	}
}
