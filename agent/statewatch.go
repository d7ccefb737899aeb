package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// dbWatch notices the state database being deleted or replaced while the
// daemon runs. SQLite would go on writing to the unlinked file, and a
// later restart would open another database and open every case again:
// the daemon stops instead (see Agent.run) and systemd restarts it.
type dbWatch struct {
	path  string
	orig  os.FileInfo
	fatal chan error // receives the first problem; capacity 1

	mu   sync.Mutex
	lost error
}

// newDBWatch remembers the file at path, the database just opened.
func newDBWatch(path string) (*dbWatch, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	return &dbWatch{path: path, orig: fi, fatal: make(chan error, 1)}, nil
}

// check compares the file at path with the one opened, once a poll round.
// The first difference is reported on fatal; later checks change nothing.
func (w *dbWatch) check() {
	fi, err := os.Stat(w.path)
	var problem error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		problem = fmt.Errorf("the state database %s was deleted while the agent ran; stopping so that the restart "+
			"opens the database on disk (restore it from a backup first to keep the open cases): %w", w.path, err)
	case err != nil:
		return // cannot tell (a transient error): the next round checks again
	case !os.SameFile(fi, w.orig):
		problem = fmt.Errorf("the state database %s was replaced by another file while the agent ran; stopping so that "+
			"the restart opens the database on disk", w.path)
	default:
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost != nil {
		return
	}
	w.lost = problem
	w.fatal <- problem
}

// err is the problem found, nil while the database is the one opened.
func (w *dbWatch) err() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}
