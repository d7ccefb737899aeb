package store

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// The schema migrations: migrations/NNNN_name.sql, numbered from 1 without
// gaps. Migration N brings PRAGMA user_version from N-1 to N. A released
// migration is never edited; a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations is the embedded list, parsed once at start-up.
var migrations = mustLoadMigrations(migrationFiles, "migrations")

func mustLoadMigrations(fsys fs.FS, dir string) []migration {
	m, err := loadMigrations(fsys, dir)
	if err != nil {
		panic(err) // the embedded files are part of the binary: a bad one is a build bug
	}
	return m
}

// loadMigrations reads NNNN_name.sql files and checks they are numbered
// 1, 2, 3, ... without gaps or repeats.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("store migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("store migration %s: the name must be NNNN_name.sql with NNNN >= 1", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("store migration %s: %w", name, err)
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("store migration %s: expected version %d (versions must run 1, 2, 3, ... without gaps or repeats)", m.name, i+1)
		}
	}
	return out, nil
}

// migrate applies the migrations the database lacks, each in its own
// BEGIN IMMEDIATE transaction that also sets PRAGMA user_version, so a
// crash or a failing step leaves the database at the previous version and
// two processes starting together apply each step once.
func (s *Store) migrate(ctx context.Context, migs []migration) error {
	latest := len(migs)
	cur, err := s.userVersion(ctx, s.db)
	if err != nil {
		return err
	}
	if cur > latest {
		return s.tooNew(cur, latest)
	}
	for _, m := range migs {
		if m.version <= cur {
			continue
		}
		err := s.write(ctx, "migration "+m.name, func(tx *wtx) error {
			v, err := s.userVersion(ctx, tx)
			if err != nil {
				return err
			}
			if v > latest {
				return s.tooNew(v, latest)
			}
			if v >= m.version { // another process applied it meanwhile
				return nil
			}
			if v == 0 {
				if err := s.checkEmpty(ctx, tx); err != nil {
					return err
				}
			}
			if v != m.version-1 {
				return fmt.Errorf("state DB %s: schema version %d, cannot apply migration %s", s.path, v, m.name)
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return s.fail("migration "+m.name, err)
			}
			// PRAGMA takes no parameters; version is an int from the file name.
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
				return s.fail("migration "+m.name, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) userVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, s.fail("read schema version", err)
	}
	return v, nil
}

func (s *Store) tooNew(have, know int) error {
	return fmt.Errorf("%w: %s has schema version %d but this hsm-agent knows versions up to %d: it was written by a newer hsm-agent; "+
		"run that version (or newer), or restore a backup made by this version; do not delete the file, it holds the cases",
		ErrIncompatible, s.path, have, know)
}

// checkEmpty refuses to lay the schema over another application's tables
// in a database that has no schema version. It runs inside the first
// migration's transaction, so a concurrent first open is not mistaken for
// a foreign database.
func (s *Store) checkEmpty(ctx context.Context, q querier) error {
	var n int
	if err := q.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		return s.fail("read schema", err)
	}
	if n > 0 {
		return fmt.Errorf("%w: %s is an SQLite database with %d schema objects but no hsm-agent schema version: it is not an hsm-agent state DB; "+
			"move it aside or set state_dir to another directory", ErrIncompatible, s.path, n)
	}
	return nil
}
