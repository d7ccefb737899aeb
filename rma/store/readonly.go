package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// slotsVersion is the first schema version with slot records (migration 0002).
const slotsVersion = 2

// readOnly opens the state DB at path for a process that must not write
// it (`hsm-agent check`): read-only, never creating the file, its
// directory, its -wal or -shm files, and never migrating; it checks the
// file is an hsm-agent state DB of at least schema version minVersion and
// runs fn on it. A missing file is an error that wraps fs.ErrNotExist.
// While the daemon has the database open (its -shm file exists), the read
// sees its latest commits; otherwise the file holds everything (the daemon
// checkpoints at close) and is read as immutable, which creates no -shm
// file.
func readOnly(ctx context.Context, path string, minVersion int64, what string, fn func(*Store) error) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("state DB %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("state DB %s: %w", abs, err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "query_only(1)")
	if _, err := os.Stat(abs + "-shm"); errors.Is(err, fs.ErrNotExist) {
		q.Set("immutable", "1")
	}
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String())
	if err != nil {
		return fmt.Errorf("state DB %s: %w", abs, err)
	}
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: abs, stmts: map[string]*sql.Stmt{}}
	defer s.Close()
	var app int64
	if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&app); err != nil {
		return s.fail(what, err)
	}
	if app != applicationID {
		return fmt.Errorf("%w: %s is not an hsm-agent state DB (application_id %#x)", ErrIncompatible, abs, app)
	}
	v, err := s.userVersion(ctx, db)
	if err != nil {
		return err
	}
	if int64(v) < minVersion {
		return fmt.Errorf("state DB %s: schema version %d has no %s (the daemon adds them, schema version %d, when it next starts)", abs, v, what, minVersion)
	}
	return fn(s)
}

// ReadLastSlots is LastSlots for a process that must not write the state
// DB (`hsm-agent check`); see readOnly.
func ReadLastSlots(ctx context.Context, path string) ([]SerialRecord, error) {
	var out []SerialRecord
	err := readOnly(ctx, path, slotsVersion, "slot records", func(s *Store) error {
		var err error
		out, err = s.LastSlots(ctx)
		return err
	})
	return out, err
}

// ReadFollowedSerials is FollowedSerials for a process that must not
// write the state DB (`hsm-agent check`); see readOnly.
func ReadFollowedSerials(ctx context.Context, path string, devices []config.Device) (map[string]string, error) {
	var out map[string]string
	err := readOnly(ctx, path, slotsVersion, "serial records", func(s *Store) error {
		var err error
		out, err = s.FollowedSerials(ctx, devices)
		return err
	})
	return out, err
}
