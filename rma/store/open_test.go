package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// filledStore makes a closed, checkpointed state DB of several pages at
// path and returns its bytes.
func filledStore(t *testing.T, path string, cases int) []byte {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < cases; i++ {
		c := sampleCase(fmt.Sprintf("C%04d", i), fmt.Sprintf("S%04d", i))
		c.Description = strings.Repeat("observed on 3 polls. ", 20)
		mustOpenCase(t, s, c, t0, "vendor", "internal")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("WAL left after a clean close: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantOpenError opens path, wants an error wrapping sentinel whose text
// contains every part, and checks the file was left byte for byte.
func wantOpenError(t *testing.T, path string, sentinel error, parts ...string) {
	t.Helper()
	before, _ := os.ReadFile(path)
	s, err := Open(path)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded, want %v", path, sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Errorf("Open error %q does not wrap %q", err, sentinel)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("Open error %q does not mention %q", err, p)
		}
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("Open changed %s (%d bytes before, %d after)", path, len(before), len(after))
	}
	t.Logf("error shown to the operator: %v", err)
}

func TestOpenCorruptFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filledStore(t, filepath.Join(dir, "good.db"), 300)
	if len(good) < 40*4096 {
		t.Fatalf("test store too small: %d bytes", len(good))
	}
	random := make([]byte, 64*1024)
	rand.Read(random)
	damaged := bytes.Clone(good)
	rand.Read(damaged[len(damaged)/2 : len(damaged)/2+3*4096]) // three pages in the middle

	for name, content := range map[string][]byte{
		"random":      random,
		"short":       []byte("SQLite format 3\x00 and then nothing"),
		"text":        []byte(strings.Repeat("cases: none\n", 100)),
		"truncated":   good[:len(good)/2],
		"damaged":     damaged,
		"header-only": good[:4096],
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			wantOpenError(t, path, ErrCorrupt, path, "corrupt", "move", "backup", "will not recreate")
			if _, err := os.Stat(path + "-wal"); err == nil && name == "random" {
				t.Error("a WAL was created next to a non-database")
			}
		})
	}
}

func TestOpenEmptyFileIsNewStore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mustOpenCase(t, s, sampleCase("C1", "S1"), t0)
}

func TestOpenNotADatabaseFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	// The path is a directory.
	asDir := filepath.Join(dir, "state.db")
	if err := os.Mkdir(asDir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Open(asDir)
	if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), asDir) || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}

	// Another application's SQLite database.
	other := filepath.Join(dir, "other.db")
	db, err := sql.Open("sqlite", other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE invoices (id INTEGER); INSERT INTO invoices VALUES (1);`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	wantOpenError(t, other, ErrIncompatible, other, "not an hsm-agent state DB")

	appid := filepath.Join(dir, "appid.db")
	db, _ = sql.Open("sqlite", appid)
	if _, err := db.Exec(`PRAGMA application_id = 42; CREATE TABLE t (x INTEGER);`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	wantOpenError(t, appid, ErrIncompatible, appid, "another application")
}

func TestOpenNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	filledStore(t, path, 1)
	db, _ := sql.Open("sqlite", path)
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	wantOpenError(t, path, ErrIncompatible, path, "schema version 99", fmt.Sprintf("up to %d", len(migrations)), "newer hsm-agent")
}

// A path under a regular file can never be created (ENOTDIR), for root
// too: the error names the path and says to fix state_dir.
func TestOpenPathUnderAFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "plainfile")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(file, "state.db"), filepath.Join(file, "sub", "state.db")} {
		_, err := Open(path)
		if !errors.Is(err, ErrNotWritable) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "state_dir") {
			t.Errorf("Open(%s) = %v, want ErrNotWritable naming the path and state_dir", path, err)
		}
	}
}

// Root bypasses file permissions (CAP_DAC_OVERRIDE): as root a 0444 state
// DB in a 0555 directory opens and is written. Documented here; the
// permission errors are tested by TestOpenNotWritableAsDaemonUser, which
// runs Open as an unprivileged user.
func TestOpenReadOnlyModeAsRoot(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatalf("this test documents root's behaviour; run the suite as root (euid %d)", os.Geteuid())
	}
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "state.db")
	filledStore(t, path, 1)
	os.Chmod(path, 0o444)
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	s, err := Open(path)
	if err != nil {
		t.Fatalf("root opening a 0444 file: %v", err)
	}
	defer s.Close()
	mustOpenCase(t, s, sampleCase("C2", "S2"), t0)
}

// Two Store handles on one file (as the daemon and the CLI) write at the
// same time: every write lands, none fails with SQLITE_BUSY, and a race
// for one dedup key opens exactly one case.
func TestTwoStoresOneFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	a, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const perWorker, workers, shared = 60, 4, 10
	errs := make(chan error, workers)
	opened := make(chan string, workers*shared)
	for w := 0; w < workers; w++ {
		s := a
		if w%2 == 1 {
			s = b
		}
		go func() {
			errs <- func() error {
				for i := 0; i < perWorker; i++ {
					id := fmt.Sprintf("W%d-%03d", w, i)
					c, err := s.OpenCase(ctx, sampleCase(id, id), openedEvent(t0), rows("vendor"))
					if err != nil {
						return err
					}
					if _, err := s.Transition(ctx, c.ID, func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
						c.Occurrences++
						return rma.Event{Type: rma.EventUpdated, Actor: "agent"}, rows("vendor"), nil
					}); err != nil {
						return err
					}
					ds, err := s.DueDeliveries(ctx, "vendor", time.Now(), 1)
					if err != nil {
						return err
					}
					if len(ds) == 1 {
						err := s.RecordAttempt(ctx, ds[0].ID, Attempt{Delivered: true, TicketID: "T"})
						if err != nil && !errors.Is(err, ErrNoChange) { // the other handle may have won
							return err
						}
					}
					if i < shared { // every worker races for the same keys
						key := fmt.Sprintf("shared-%d", i)
						_, err := s.OpenCase(ctx, sampleCase(fmt.Sprintf("%s-by-W%d", key, w), key), openedEvent(t0), rows("vendor"))
						switch {
						case err == nil:
							opened <- key
						case !errors.Is(err, ErrDuplicate):
							return err
						}
					}
				}
				return nil
			}()
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(opened)
	perKey := map[string]int{}
	for k := range opened {
		perKey[k]++
	}
	for i := 0; i < shared; i++ {
		if n := perKey[fmt.Sprintf("shared-%d", i)]; n != 1 {
			t.Errorf("shared-%d opened %d times, want exactly 1", i, n)
		}
	}
	all, err := b.Cases(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*perWorker+shared {
		t.Errorf("%d cases, want %d", len(all), workers*perWorker+shared)
	}
	for _, c := range all {
		if strings.HasPrefix(c.ID, "W") && c.Seq != 2 {
			t.Errorf("case %s seq %d", c.ID, c.Seq)
		}
	}
}
