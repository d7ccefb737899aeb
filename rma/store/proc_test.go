package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// The tests below re-execute the test binary as a child process that runs
// one of these modes (env storeChildEnv) against the DB at storeDBEnv.
const (
	storeChildEnv = "HSM_STORE_TEST_CHILD"
	storeDBEnv    = "HSM_STORE_TEST_DB"
	storeArgEnv   = "HSM_STORE_TEST_ARG"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(storeChildEnv); mode != "" {
		os.Exit(runChild(mode, os.Getenv(storeDBEnv), os.Getenv(storeArgEnv)))
	}
	os.Exit(m.Run())
}

func runChild(mode, path, arg string) int {
	ctx := context.Background()
	if mode == "open-ro" {
		// In our own mount namespace (Go made it private): make arg a
		// read-only bind mount, then report Open like mode open.
		if err := syscall.Mount(arg, arg, "", syscall.MS_BIND, ""); err != nil {
			fmt.Println("mount", err)
			return 1
		}
		if err := syscall.Mount("", arg, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
			fmt.Println("remount", err)
			return 1
		}
		mode = "open"
	}
	s, err := Open(path)
	if mode == "open" { // report the outcome of Open, then write once
		if err != nil {
			for _, e := range []error{ErrNotWritable, ErrCorrupt, ErrIncompatible} {
				if errors.Is(err, e) {
					fmt.Printf("%s\t%v\n", e, strings.TrimPrefix(err.Error(), e.Error()+": "))
					return 0
				}
			}
			fmt.Printf("other\t%v\n", err)
			return 0
		}
		defer s.Close()
		_, err := s.OpenCase(ctx, sampleCase("child-"+strconv.Itoa(os.Getpid()), "child-"+strconv.Itoa(os.Getpid())), openedEvent(t0), rows("vendor"))
		if err != nil {
			fmt.Printf("write\t%v\n", err)
			return 0
		}
		fmt.Println("ok")
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	switch mode {
	case "kill-after-commit":
		// One case, a second event, one failed attempt: then SIGKILL right
		// after the last commit returns, with no Close.
		if _, err := s.OpenCase(ctx, sampleCase("C1", "S1"), openedEvent(t0), rows("vendor", "pager")); err != nil {
			return fail(err)
		}
		if _, err := s.Transition(ctx, "C1", updateFn(t0.Add(time.Minute))); err != nil {
			return fail(err)
		}
		ds, err := s.DueDeliveries(ctx, "pager", t0.Add(time.Hour), 1)
		if err != nil || len(ds) != 1 {
			return fail(fmt.Errorf("due: %v %v", ds, err))
		}
		if err := s.RecordAttempt(ctx, ds[0].ID, Attempt{At: t0.Add(2 * time.Minute), Status: 503, Err: "HTTP 503", NextAttempt: t0.Add(3 * time.Minute)}); err != nil {
			return fail(err)
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "storm":
		// Commit case after case until killed; report each one finished.
		for i := 0; ; i++ {
			id := fmt.Sprintf("%s%05d", arg, i)
			if err := stormCase(ctx, s, id); err != nil {
				return fail(err)
			}
			fmt.Println("done", id)
		}
	case "writer":
		// Cross-process contention: own cases plus a race for shared keys.
		n, _ := strconv.Atoi(os.Getenv("HSM_STORE_TEST_N"))
		for i := 0; i < n; i++ {
			if err := stormCase(ctx, s, fmt.Sprintf("%s%05d", arg, i)); err != nil {
				return fail(err)
			}
			key := fmt.Sprintf("shared-%d", i)
			_, err := s.OpenCase(ctx, sampleCase(key+"-by-"+arg, key), openedEvent(t0), rows("vendor"))
			switch {
			case err == nil:
				fmt.Println("won", key)
			case !errors.Is(err, ErrDuplicate):
				return fail(err)
			}
		}
		return 0
	}
	return fail(fmt.Errorf("unknown child mode %q", mode))
}

func updateFn(at time.Time) func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
	return func(c *rma.Case) (rma.Event, []rma.Delivery, error) {
		c.Occurrences++
		return rma.Event{Type: rma.EventUpdated, Actor: "agent", At: at}, rows("vendor"), nil
	}
}

// stormCase writes one case in three transactions: open (2 rows), update
// (1 row), deliver the first vendor row with a ticket.
func stormCase(ctx context.Context, s *Store, id string) error {
	if _, err := s.OpenCase(ctx, sampleCase(id, id), openedEvent(t0), rows("vendor", "internal")); err != nil {
		return err
	}
	if _, err := s.Transition(ctx, id, updateFn(t0.Add(time.Second))); err != nil {
		return err
	}
	ds, err := s.Deliveries(ctx, id)
	if err != nil {
		return err
	}
	return s.RecordAttempt(ctx, ds[0].ID, Attempt{At: t0.Add(2 * time.Second), Delivered: true, Status: 201, TicketID: "T-" + id})
}

// checkConsistent verifies every case in the store is whole: events 1..Seq,
// the outbox rows of exactly those events, attempts matching the delivery
// log, desk refs matching delivered tickets. It returns the complete cases
// (all three transactions of stormCase committed).
func checkConsistent(t *testing.T, s *Store) map[string]bool {
	t.Helper()
	ctx := context.Background()
	cases, err := s.Cases(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	complete := map[string]bool{}
	for _, c := range cases {
		evs, _ := s.Events(ctx, c.ID)
		ds, _ := s.Deliveries(ctx, c.ID)
		var seqs []int
		attemptsLogged := map[int64]int{}
		for _, e := range evs {
			if e.Seq > 0 {
				seqs = append(seqs, e.Seq)
			}
			if e.Type == rma.EventDelivery {
				d := deliveryEventData(t, e)
				attemptsLogged[d.DeliveryID]++
			}
		}
		for i, sq := range seqs {
			if sq != i+1 {
				t.Errorf("case %s: event seqs %v", c.ID, seqs)
			}
		}
		if len(seqs) != c.Seq {
			t.Errorf("case %s: seq %d but %d events", c.ID, c.Seq, len(seqs))
		}
		wantRows := map[int]int{1: 2, 2: 1} // stormCase
		if strings.HasPrefix(c.ID, "shared-") {
			wantRows = map[int]int{1: 1}
		}
		perSeq := map[int]int{}
		delivered := false
		for _, d := range ds {
			perSeq[d.Seq]++
			if d.Attempts != attemptsLogged[d.ID] {
				t.Errorf("case %s row %d: %d attempts, %d logged", c.ID, d.ID, d.Attempts, attemptsLogged[d.ID])
			}
			if d.State == rma.DeliveryDelivered {
				delivered = true
				if c.DeskRefs[d.Desk] != d.TicketID {
					t.Errorf("case %s: delivered ticket %s but desk ref %v", c.ID, d.TicketID, c.DeskRefs)
				}
			}
		}
		if !delivered && len(c.DeskRefs) > 0 {
			t.Errorf("case %s: desk refs %v without a delivery", c.ID, c.DeskRefs)
		}
		for sq := 1; sq <= 2; sq++ {
			want := 0
			if sq <= c.Seq {
				want = wantRows[sq]
			}
			if perSeq[sq] != want {
				t.Errorf("case %s (seq %d): %d outbox rows for event %d, want %d", c.ID, c.Seq, perSeq[sq], sq, want)
			}
		}
		if c.Seq > len(wantRows) {
			t.Errorf("case %s: seq %d", c.ID, c.Seq)
		}
		if c.Seq == 2 && delivered {
			complete[c.ID] = true
		}
	}
	return complete
}

func deliveryEventData(t *testing.T, e rma.Event) deliveryData {
	t.Helper()
	var d deliveryData
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func childCmd(mode, path, arg string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), storeChildEnv+"="+mode, storeDBEnv+"="+path, storeArgEnv+"="+arg)
	return cmd
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// kill -9 right after a commit: the reopened store has exactly the
// committed rows, the outbox rows still pending, nothing half-written.
func TestKillAfterCommit(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := childCmd("kill-after-commit", path, "")
	out, err := cmd.CombinedOutput()
	if !killedBySIGKILL(err) {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
	// The commits are in the WAL, which nobody checkpointed.
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL left by the killed process: %v", err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	c, err := s.Case(ctx, "C1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Seq != 2 || c.Occurrences != 2 || len(c.DeskRefs) != 0 {
		t.Errorf("case after kill: %+v", c)
	}
	all, _ := s.Cases(ctx, false)
	if len(all) != 1 {
		t.Errorf("%d cases, want 1", len(all))
	}
	evs, _ := s.Events(ctx, "C1")
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Type))
	}
	if strings.Join(got, " ") != "1:case.opened 2:case.updated 0:delivery" {
		t.Errorf("events after kill: %v", got)
	}
	ds, _ := s.Deliveries(ctx, "C1")
	got = nil
	for _, d := range ds {
		got = append(got, fmt.Sprintf("%s:%s:%s:%d", d.IdempotencyKey, d.Desk, d.State, d.Attempts))
	}
	if strings.Join(got, " ") != "C1:1:vendor:pending:0 C1:1:pager:pending:1 C1:2:vendor:pending:0" {
		t.Errorf("outbox after kill: %v", got)
	}
	// What the worker will deliver after the restart: every row, once.
	due, _ := s.DueDeliveries(ctx, "vendor", t0.Add(time.Hour), 0)
	pager, _ := s.DueDeliveries(ctx, "pager", t0.Add(time.Hour), 0)
	if len(due) != 2 || len(pager) != 1 {
		t.Errorf("due after restart: vendor %d, pager %d", len(due), len(pager))
	}
	checkConsistent(t, s)
}

// kill -9 at an arbitrary moment of a stream of transactions: every case
// the child reported finished is there and complete, and every case in
// the store is whole (no transaction half-applied).
func TestKillDuringWrites(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := childCmd("storm", path, "K")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill after 40 reports; the lines the child wrote before it died are
	// still in the pipe and are read to the end.
	reported := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		id, ok := strings.CutPrefix(sc.Text(), "done ")
		if !ok {
			t.Fatalf("child said %q", sc.Text())
		}
		reported[id] = true
		if len(reported) == 40 {
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	if err := cmd.Wait(); !killedBySIGKILL(err) {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	complete := checkConsistent(t, s)
	for id := range reported {
		if !complete[id] {
			t.Errorf("case %s was reported committed but is not complete after the kill", id)
		}
	}
	all, _ := s.Cases(context.Background(), false)
	// At most the one case in flight when the kill came is unreported.
	if len(all) < len(reported) || len(all) > len(reported)+1 {
		t.Errorf("%d cases after the kill, %d reported", len(all), len(reported))
	}
}

// Two processes (daemon and CLI) write the same file at once: all writes
// land, none fails with SQLITE_BUSY, and a race for one dedup key across
// processes opens exactly one case.
func TestTwoProcessesWrite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state.db")
	const n = 40
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for _, name := range []string{"P", "Q"} {
		cmd := childCmd("writer", path, name)
		cmd.Env = append(cmd.Env, "HSM_STORE_TEST_N="+strconv.Itoa(n))
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	won := map[string]int{}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v\n%s", i, err, outs[i])
		}
		for _, line := range strings.Fields(strings.ReplaceAll(outs[i].String(), "won ", "won:")) {
			if k, ok := strings.CutPrefix(line, "won:"); ok {
				won[k]++
			}
		}
	}
	for i := 0; i < n; i++ {
		if won[fmt.Sprintf("shared-%d", i)] != 1 {
			t.Errorf("shared-%d opened by %d processes, want 1", i, won[fmt.Sprintf("shared-%d", i)])
		}
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	complete := checkConsistent(t, s)
	all, _ := s.Cases(context.Background(), false)
	if len(complete) != 2*n || len(all) != 3*n {
		t.Errorf("%d cases, %d of them complete; want %d and %d", len(all), len(complete), 3*n, 2*n)
	}
}

// The daemon runs as an unprivileged user. Run Open in a child process as
// nobody (uid 65534) against state files owned by root: each mistake
// gives ErrNotWritable naming the path, the user and the fix, and the fix
// (chown) makes it work.
func TestOpenNotWritableAsDaemonUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatalf("this test switches to uid 65534 and must run as root (euid %d)", os.Geteuid())
	}
	const uid, gid = 65534, 65534
	base, err := os.MkdirTemp("", "store-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	// A copy of the test binary that nobody can execute.
	bin := filepath.Join(base, "store.test")
	if err := copyFile(os.Args[0], bin, 0o755); err != nil {
		t.Fatal(err)
	}
	asNobody := func(path string) (kind, msg string) {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = []string{storeChildEnv + "=open", storeDBEnv + "=" + path, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child as nobody: %v\n%s", err, out)
		}
		kind, msg, _ = strings.Cut(strings.TrimSpace(string(out)), "\t")
		t.Logf("as nobody, Open(%s): %s %s", path, kind, msg)
		return kind, msg
	}
	mkdir := func(name string, mode os.FileMode) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, mode)
		return d
	}

	// 1. The state DB was created by root (e.g. a first run as root).
	rootDir := mkdir("root-owned", 0o755)
	rootDB := filepath.Join(rootDir, "state.db")
	filledStore(t, rootDB, 2)
	os.Chmod(rootDB, 0o644)
	kind, msg := asNobody(rootDB)
	for _, want := range []string{"cannot create files in " + rootDir, "cannot read and write " + rootDB,
		"runs as nobody (uid 65534)", rootDir + " is owned by root (uid 0)", "chown -R USER: " + rootDir, "state_dir"} {
		if kind != ErrNotWritable.Error() || !strings.Contains(msg, want) {
			t.Errorf("root-owned file: %s %s\nwant it to contain %q", kind, msg, want)
		}
	}

	// 2. The file is writable but the directory is not: no -wal/-shm.
	dirRO := mkdir("dir-ro", 0o755)
	dbRW := filepath.Join(dirRO, "state.db")
	filledStore(t, dbRW, 1)
	os.Chmod(dbRW, 0o666)
	kind, msg = asNobody(dbRW)
	if kind != ErrNotWritable.Error() || !strings.Contains(msg, "cannot create files in "+dirRO) || strings.Contains(msg, "cannot read and write") {
		t.Errorf("read-only directory: %s %s", kind, msg)
	}

	// 3. state_dir does not exist and cannot be created.
	parent := mkdir("parent-ro", 0o755)
	missing := filepath.Join(parent, "state", "state.db")
	kind, msg = asNobody(missing)
	if kind != ErrNotWritable.Error() || !strings.Contains(msg, "cannot create the state directory") || !strings.Contains(msg, missing) ||
		!strings.Contains(msg, parent+" is owned by root") {
		t.Errorf("missing directory: %s %s", kind, msg)
	}

	// The fix the message gives works, and the cases are still there.
	for _, p := range []string{rootDir, rootDB} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if kind, msg := asNobody(rootDB); kind != "ok" {
		t.Errorf("after chown: %s %s", kind, msg)
	}
	s, err := Open(rootDB)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all, _ := s.Cases(context.Background(), false)
	if len(all) != 3 {
		t.Errorf("%d cases after the fix, want 2 old + 1 written by nobody", len(all))
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// A read-only file system binds root too: run Open as root in a private
// mount namespace where the state directory (or only the DB file) is a
// read-only bind mount, as with systemd's ProtectSystem=strict without
// ReadWritePaths.
func TestOpenReadOnlyFileSystem(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatalf("this test creates a mount namespace and must run as root (euid %d)", os.Geteuid())
	}
	for _, target := range []string{"dir", "file"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state")
			path := filepath.Join(dir, "state.db")
			filledStore(t, path, 1)
			before, _ := os.ReadFile(path)
			mount := dir
			if target == "file" {
				mount = path
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), storeChildEnv+"=open-ro", storeDBEnv+"="+path, storeArgEnv+"="+mount)
			cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			kind, msg, _ := strings.Cut(strings.TrimSpace(string(out)), "\t")
			t.Logf("read-only %s: %s %s", target, kind, msg)
			want := "cannot create files in " + dir
			if target == "file" {
				want = "cannot read and write " + path
			}
			for _, w := range []string{want, "read-only file system", "ReadWritePaths", "state_dir"} {
				if kind != ErrNotWritable.Error() || !strings.Contains(msg, w) {
					t.Errorf("got %s %s\nwant ErrNotWritable containing %q", kind, msg, w)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("the DB file changed")
			}
		})
	}
}
