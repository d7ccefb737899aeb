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
)

// slotsVersion is the first schema version with slot records (migration 0002).
const slotsVersion = 2

// ReadLastSlots is LastSlots for a process that must not write the state
// DB (`hsm-agent check`): it opens the file at path read-only and never
// creates it, its directory, its -wal or -shm files, and never migrates.
// A missing file is an error that wraps fs.ErrNotExist. While the daemon
// has the database open (its -shm file exists), the read sees its latest
// commits; otherwise the file holds everything (the daemon checkpoints at
// close) and is read as immutable, which creates no -shm file.
func ReadLastSlots(ctx context.Context, path string) ([]SerialRecord, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state DB %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("state DB %s: %w", abs, err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "query_only(1)")
	if _, err := os.Stat(abs + "-shm"); errors.Is(err, fs.ErrNotExist) {
		q.Set("immutable", "1")
	}
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}).String())
	if err != nil {
		return nil, fmt.Errorf("state DB %s: %w", abs, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	s := &Store{db: db, path: abs}
	var app int64
	if err := db.QueryRowContext(ctx, "PRAGMA application_id").Scan(&app); err != nil {
		return nil, s.fail("read slots", err)
	}
	if app != applicationID {
		return nil, fmt.Errorf("%w: %s is not an hsm-agent state DB (application_id %#x)", ErrIncompatible, abs, app)
	}
	v, err := s.userVersion(ctx, db)
	if err != nil {
		return nil, err
	}
	if v < slotsVersion {
		return nil, fmt.Errorf("state DB %s: schema version %d has no slot records (the daemon adds them, schema version %d, when it next starts)", abs, v, slotsVersion)
	}
	rows, err := db.QueryContext(ctx, lastSlotsQuery)
	if err != nil {
		return nil, s.fail("read slots", err)
	}
	out, err := scanSerials(rows)
	if err != nil {
		return nil, s.fail("read slots", err)
	}
	return out, nil
}
