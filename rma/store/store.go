// Package store is the agent's durable state: an SQLite database (pure Go,
// modernc.org/sqlite, WAL mode) in state_dir holding the cases, the
// append-only case event log, the outbox of desk deliveries and each
// device's serial history.
//
// The daemon and the CLI open the same file at the same time. Every write
// is one BEGIN IMMEDIATE transaction, so a case transition and its outbox
// rows commit together before any network call, and two processes never
// interleave halves of a transition; a writer waits up to BusyTimeout for
// the other. At most one non-terminal case per dedup key is enforced by a
// unique partial index, so it holds across processes too.
//
// Open never recreates or overwrites an existing file: a corrupt file, a
// file that is not an hsm-agent state DB, a schema newer than this binary
// or a location the agent cannot write are errors (ErrCorrupt,
// ErrIncompatible, ErrNotWritable) that name the path and the fix.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hsm-agent/hsm-agent/rma"
)

// Errors callers test with errors.Is.
var (
	// ErrNotFound: no case or outbox row with that ID. It is
	// rma.ErrNotFound, so the engine recognises it.
	ErrNotFound = rma.ErrNotFound
	// ErrDuplicate: a non-terminal case with the same dedup key exists.
	ErrDuplicate = errors.New("an open case with this dedup key exists")
	// ErrNoChange: nothing was written (a Transition fn returned it, or
	// RecordAttempt was called on a row that is no longer pending). It is
	// rma.ErrNoChange, so a fn may return either name.
	ErrNoChange = rma.ErrNoChange

	// ErrCorrupt: the state DB file is damaged; Open refuses it and never
	// overwrites it.
	ErrCorrupt = errors.New("state database is corrupt")
	// ErrNotWritable: the state DB or its directory cannot be written by
	// the user the agent runs as.
	ErrNotWritable = errors.New("state database is not writable")
	// ErrIncompatible: the path holds something that is not an hsm-agent
	// state DB of a schema this binary knows (a directory, another
	// application's database, or a schema written by a newer hsm-agent).
	ErrIncompatible = errors.New("state database is incompatible")
)

// BusyTimeout is how long a write waits for another connection or process
// (the daemon, the CLI) holding the write lock before it fails.
const BusyTimeout = 10 * time.Second

// applicationID marks the file as an hsm-agent state DB ("HSMA"); set by
// migration 0001.
const applicationID = 0x48534D41

// maxConns bounds the connection pool (each connection has its own page
// cache). Writes are serialized in-process by Store.wsem anyway.
const maxConns = 4

// Store is the state database. It is safe for concurrent use; several
// Stores (in one process or several) may open the same file.
type Store struct {
	db   *sql.DB
	path string
	// wsem serializes this handle's write transactions, so writers of one
	// process queue here instead of polling SQLite's lock in the busy
	// handler; other processes still wait on BEGIN IMMEDIATE.
	wsem chan struct{}

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // prepared statements by query text
}

// Open opens the state DB at path, creating the file and its directory
// when missing, and brings its schema up to date. It runs PRAGMA
// quick_check and refuses (never overwrites) a damaged file.
func Open(path string) (*Store, error) {
	return open(context.Background(), path, migrations)
}

func open(ctx context.Context, path string, migs []migration) (*Store, error) {
	if path == "" {
		return nil, errors.New("state DB: empty path: set state_dir")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state DB %s: %w", path, err)
	}
	if err := precheck(abs); err != nil {
		return nil, err
	}
	// Inspect the file on one connection that writes nothing, and only
	// then switch it to WAL (which rewrites the header): a file that is
	// not ours is left byte for byte as it was.
	chk, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("state DB %s: %w", abs, err)
	}
	chk.SetMaxOpenConns(1)
	s := &Store{db: chk, path: abs, wsem: make(chan struct{}, 1), stmts: map[string]*sql.Stmt{}}
	err = s.check(ctx, len(migs))
	if err == nil {
		err = s.enableWAL(ctx)
	}
	if cerr := chk.Close(); err == nil && cerr != nil {
		err = s.fail("open", cerr)
	}
	if err != nil {
		return nil, err
	}

	db, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		return nil, fmt.Errorf("state DB %s: %w", abs, err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	s.db = db
	if err := s.migrate(ctx, migs); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Path is the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes the database. The last connection to close checkpoints the
// WAL into the main file.
func (s *Store) Close() error {
	s.mu.Lock()
	for q, st := range s.stmts {
		st.Close()
		delete(s.stmts, q)
	}
	s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("state DB %s: close: %w", s.path, err)
	}
	return nil
}

// dsn builds the connection string. Every connection gets:
//
//   - journal_mode=WAL: readers (the CLI) never block the writer (the
//     daemon) and a commit appends to the -wal file instead of rewriting
//     pages in place.
//   - synchronous=NORMAL: in WAL mode a commit is complete once its frames
//     are written to the -wal file (in the OS page cache); SQLite fsyncs at
//     checkpoints. A killed process (kill -9, a crash, an OOM kill) loses
//     nothing that was committed, because the kernel still holds and
//     writes out those pages, and the WAL's checksummed frames mean a
//     half-written transaction is ignored at the next open. Only a power
//     loss or kernel crash can roll back the last few commits (never
//     corrupt the file); a desk then sees a repeat with the same
//     idempotency key, or the fault is confirmed and opened again.
//     synchronous=FULL would fsync every commit and cost an fsync per
//     delivery attempt.
//   - busy_timeout: a writer waits for the other process's transaction
//     instead of failing with SQLITE_BUSY.
//   - foreign_keys=ON: events and outbox rows must belong to a case.
//   - _txlock=immediate: every transaction is BEGIN IMMEDIATE, taking the
//     write lock up front, so a read-then-write transaction never fails
//     half-way with SQLITE_BUSY when another process wrote in between.
//
// The inspecting connection of Open (full false) leaves out journal_mode,
// which writes to the file, and _txlock, so its read transaction is a
// plain snapshot.
func dsn(abs string, full bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.Itoa(int(BusyTimeout/time.Millisecond)))
	if full {
		q.Set("_txlock", "immediate")
		q.Add("_pragma", "journal_mode(WAL)")
	}
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// sqliteMagic starts every SQLite 3 database file.
const sqliteMagic = "SQLite format 3\x00"

// precheck looks at the path before SQLite does, so the operator gets an
// error that says what is wrong and what to do, and so nothing is ever
// created over a file that is not a database.
func precheck(abs string) error {
	dir := filepath.Dir(abs)
	fi, err := os.Stat(abs)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("%w: %s is a directory, not a database file: move it aside or set state_dir to another directory", ErrIncompatible, abs)
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("%w: %s is not a regular file (%s): move it aside or set state_dir to another directory", ErrIncompatible, abs, fi.Mode().Type())
	case err == nil:
		if err := checkHeader(abs, fi.Size()); err != nil {
			return err
		}
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return notWritable(abs, dir, []string{fmt.Sprintf("cannot create the state directory: %v", err)}, err)
		}
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %s: a component of the path is a file, not a directory (%v); set state_dir to a directory, or move that file aside",
			ErrNotWritable, abs, err)
	default:
		return notWritable(abs, dir, []string{err.Error()}, err)
	}
	// SQLite needs to write the file and to create the -wal and -shm files
	// next to it. access(2) answers for the real user, which is the
	// effective one for the daemon and the CLI (no setuid).
	var problems []string
	var errs []error
	if err := syscall.Access(dir, 0x2|0x1); err != nil { // W_OK|X_OK
		problems = append(problems, fmt.Sprintf("cannot create files in %s (%v)", dir, err))
		errs = append(errs, err)
	}
	for _, p := range []string{abs, abs + "-wal", abs + "-shm"} {
		err := syscall.Access(p, 0x4|0x2) // R_OK|W_OK
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			problems = append(problems, fmt.Sprintf("cannot read and write %s (%v)", p, err))
			errs = append(errs, err)
		}
	}
	if len(problems) > 0 {
		return notWritable(abs, dir, problems, errs...)
	}
	return nil
}

// checkHeader refuses a non-empty file that does not start like an SQLite
// database (an empty file is a new database to SQLite, nothing to lose).
func checkHeader(abs string, size int64) error {
	if size == 0 {
		return nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return notWritable(abs, filepath.Dir(abs), []string{err.Error()}, err)
	}
	defer f.Close()
	buf := make([]byte, 100) // the database header
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return corrupt(abs, fmt.Sprintf("cannot read the header: %v", err), err)
	}
	if n < len(buf) {
		return corrupt(abs, fmt.Sprintf("only %d bytes long, shorter than an SQLite header", n), nil)
	}
	if string(buf[:len(sqliteMagic)]) != sqliteMagic {
		return corrupt(abs, `not an SQLite database (the header is not "SQLite format 3")`, nil)
	}
	return nil
}

// corrupt builds the ErrCorrupt error. cause, when not nil, is wrapped too.
func corrupt(abs, detail string, cause error) error {
	msg := fmt.Sprintf("%s: %s; hsm-agent will not recreate or overwrite it, because it holds the cases and the undelivered desk events: "+
		"stop hsm-agent, move %s and any %s-wal and %s-shm files aside (keep them for support), then restore the file from a backup; "+
		"without a backup, hsm-agent starts with an empty store once the file is moved away", abs, detail, abs, abs, abs)
	if cause != nil {
		return fmt.Errorf("%w: %s: %w", ErrCorrupt, msg, cause)
	}
	return fmt.Errorf("%w: %s", ErrCorrupt, msg)
}

// notWritable builds the ErrNotWritable error: what failed, who the agent
// runs as, who owns the directory, and the fix.
func notWritable(abs, dir string, problems []string, causes ...error) error {
	me := userName(os.Geteuid())
	var fix string
	rofs := false
	for _, c := range causes {
		rofs = rofs || errors.Is(c, syscall.EROFS)
	}
	if rofs {
		fix = "the file system is read-only here: remount it read-write, or, for the systemd service, list the directory in ReadWritePaths= " +
			"(or use StateDirectory=); or set state_dir to a writable directory"
	} else {
		owner := ""
		if d, fi := existingAncestor(dir); fi != nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				owner = fmt.Sprintf("; %s is owned by %s with mode %s", d, userName(int(st.Uid)), fi.Mode())
			}
		}
		fix = fmt.Sprintf("hsm-agent runs as %s%s: run hsm-agent as the user that owns the state directory "+
			"(for the CLI, e.g. sudo -u that user), or give the directory and its files to the service user "+
			"(chown -R USER: %s; chmod u+rwx %s), or set state_dir to a directory that user can write",
			me, owner, dir, dir)
	}
	return fmt.Errorf("%w: %s: %s; %s", ErrNotWritable, abs, strings.Join(problems, "; "), fix)
}

// userName is "name (uid N)", or "uid N" when the name is unknown.
func userName(uid int) string {
	id := strconv.Itoa(uid)
	if u, err := user.LookupId(id); err == nil {
		return fmt.Sprintf("%s (uid %s)", u.Username, id)
	}
	return "uid " + id
}

// existingAncestor returns dir or its nearest existing ancestor.
func existingAncestor(dir string) (string, os.FileInfo) {
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			return d, fi
		}
		if d == filepath.Dir(d) {
			return d, nil
		}
	}
}

// fail turns an SQLite error into one that names the database and, for a
// damaged, read-only or full database, says what to do. op says what was
// being done.
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return corrupt(s.path, op+": "+err.Error(), err)
		case sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH:
			return fmt.Errorf("%s: %w", op, notWritable(s.path, filepath.Dir(s.path), []string{err.Error()}, err))
		case sqlite3.SQLITE_BUSY:
			return fmt.Errorf("state DB %s: %s: the database is locked by another connection or process (waited up to %s): %w", s.path, op, BusyTimeout, err)
		case sqlite3.SQLITE_FULL:
			return fmt.Errorf("state DB %s: %s: the disk is full; free space on the file system of %s: %w", s.path, op, filepath.Dir(s.path), err)
		}
	}
	return fmt.Errorf("state DB %s: %s: %w", s.path, op, err)
}

// check runs PRAGMA quick_check (O(size): verifies every page and index
// without cross-checking row contents), refuses another application's
// database and a schema newer than this binary. It writes nothing.
func (s *Store) check(ctx context.Context, latest int) error {
	rows, err := s.db.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		return s.fail("open", err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return s.fail("quick_check", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return s.fail("quick_check", err)
	}
	rows.Close()
	if len(problems) > 0 {
		return corrupt(s.path, "PRAGMA quick_check found: "+strings.Join(problems, "; "), nil)
	}
	var app int64
	if err := s.db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&app); err != nil {
		return s.fail("open", err)
	}
	if app != 0 && app != applicationID {
		return fmt.Errorf("%w: %s is an SQLite database of another application (application_id %#x): move it aside or set state_dir to another directory", ErrIncompatible, s.path, app)
	}
	// One snapshot for both reads: a concurrent first open by another
	// process must not look like a foreign database.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return s.fail("open", err)
	}
	defer tx.Rollback()
	v, err := s.userVersion(ctx, tx)
	if err != nil {
		return err
	}
	if v > latest {
		return s.tooNew(v, latest)
	}
	if v == 0 {
		return s.checkEmpty(ctx, tx)
	}
	return nil
}

// enableWAL switches the database to WAL mode (persistent in the file).
// SQLite does not call the busy handler for this switch, so a second
// process opening a brand-new file at the same moment gets SQLITE_BUSY at
// once: retry it within BusyTimeout.
func (s *Store) enableWAL(ctx context.Context) error {
	var mode string
	deadline := time.Now().Add(BusyTimeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil {
			break
		}
		if !isBusy(err) || time.Now().After(deadline) {
			return s.fail("enable WAL", err)
		}
		select {
		case <-ctx.Done():
			return s.fail("enable WAL", err)
		case <-time.After(wait):
		}
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("state DB %s: cannot enable WAL mode (journal mode stays %q); the file system must support shared memory (not NFS)", s.path, mode)
	}
	return nil
}

// write runs fn in one BEGIN IMMEDIATE transaction and commits it; any
// error from fn rolls everything back.
func (s *Store) write(ctx context.Context, op string, fn func(tx *wtx) error) error {
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("state DB %s: %s: %w", s.path, op, ctx.Err())
	}
	defer func() { <-s.wsem }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(op+": begin", err)
	}
	if err := fn(&wtx{Tx: tx, s: s}); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return s.fail(op+": commit", err)
	}
	return nil
}

// wtx is a write transaction that runs its statements from the Store's
// prepared statement cache (parsing SQL costs more than executing it).
type wtx struct {
	*sql.Tx
	s *Store
}

func (t *wtx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.s.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return t.StmtContext(ctx, st).ExecContext(ctx, args...)
}

func (t *wtx) queryRow(ctx context.Context, q string, args ...any) scanner {
	st, err := t.s.prepared(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return t.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}

func (s *Store) queryRow(ctx context.Context, q string, args ...any) scanner {
	st, err := s.prepared(ctx, q)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.prepared(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// prepared returns the statement for q, preparing it on first use;
// database/sql keeps one prepared copy per connection.
func (s *Store) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[q]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	s.stmts[q] = st
	return st, nil
}

// errRow is a row whose Scan returns the error of preparing its query.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// timeLayout stores times in UTC, fixed width with nanoseconds, so that
// text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func fmtTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// fmtTimeNull stores the zero time as NULL.
func fmtTimeNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return fmtTime(t)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q in the database: %w", s, err)
	}
	if t.IsZero() {
		return time.Time{}, nil
	}
	return t, nil
}

func parseTimeNull(s sql.NullString) (time.Time, error) {
	if !s.Valid {
		return time.Time{}, nil
	}
	return parseTime(s.String)
}

// now is the time used when a caller leaves a time zero.
func now() time.Time { return time.Now().UTC() }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isBusy reports whether err is SQLITE_BUSY (or SQLITE_LOCKED).
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	code := se.Code() & 0xff
	return code == sqlite3.SQLITE_BUSY || code == sqlite3.SQLITE_LOCKED
}
