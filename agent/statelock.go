package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// StateLockName is the lock file inside state_dir: the running daemon holds
// an exclusive lock on it and writes its PID into it.
const StateLockName = "hsm-agent.lock"

// errLocked is returned by lockFile when another process holds the lock.
var errLocked = errors.New("locked by another process")

// lockState takes the lock of one daemon per state directory. A second
// daemon on the same state_dir would send every case event twice, so it
// refuses to start, naming the PID of the one that runs. The CLI (cases,
// check) does not take the lock. The returned function releases it.
func lockState(stateDir, configFile string) (func() error, error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("state_dir %s (in %s): %w", stateDir, configFile, err)
	}
	path := filepath.Join(stateDir, StateLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock file of state_dir %s (in %s): %w", stateDir, configFile, err)
	}
	if err := lockFile(f); err != nil {
		defer f.Close()
		if errors.Is(err, errLocked) {
			holder := "unknown PID"
			if b, rerr := os.ReadFile(path); rerr == nil && strings.TrimSpace(string(b)) != "" {
				holder = "PID " + strings.TrimSpace(string(b))
			}
			return nil, fmt.Errorf("another hsm-agent (%s) already runs on state_dir %s (it holds %s); "+
				"stop it first, or give this one another state_dir in %s", holder, stateDir, path, configFile)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f.Close, nil // closing the file releases the lock
}
