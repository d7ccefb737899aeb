// Package spool is the spool desk: it writes each case event into a
// directory, for air-gapped sites (someone carries the files to the vendor)
// and for the demo. An event becomes <dir>/<case-id>-<seq>.json (the desk
// event of design.md, the bundle without its base64 content) and its bundle
// <dir>/<case-id>-<seq>-<bundle name>. Every file is written to a hidden
// temporary file in the same directory, synced and renamed into place, so a
// reader sees either nothing or the whole file; a re-sent event overwrites
// the same names, so each event stays one pair of files.
package spool

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/desk"
)

// tmpMarker is in the name of every temporary file; files with it that a
// crash left behind are removed at start once they are staleTmp old.
const (
	tmpMarker = ".tmp-"
	staleTmp  = time.Hour
	fileMode  = 0o640
	dirMode   = 0o750
)

// Desk is one configured spool desk.
type Desk struct {
	name   string
	dir    string
	rate   int
	logger *slog.Logger
}

// New builds the spool desk cfg describes, creating its directory and
// checking that the agent can write there.
func New(cfg config.Desk, logger *slog.Logger) (*Desk, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		return nil, fmt.Errorf("desk %q: dir is empty; set desks[].dir to the spool directory, e.g. /var/spool/hsm-agent", cfg.Name)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("desk %q: dir %s: %w", cfg.Name, cfg.Dir, err)
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("desk %q: create spool directory: %w; create it and let the agent's user write to it", cfg.Name, err)
	}
	probe, err := os.CreateTemp(dir, ".write-check"+tmpMarker+"*")
	if err != nil {
		return nil, fmt.Errorf("desk %q: spool directory %s is not writable: %w; let the agent's user write to it", cfg.Name, dir, err)
	}
	_ = probe.Close()
	_ = os.Remove(probe.Name())
	d := &Desk{name: cfg.Name, dir: dir, rate: cfg.RatePerMinute, logger: logger.With("desk", cfg.Name)}
	d.removeStaleTemps()
	return d, nil
}

// Name returns the desk's configured name.
func (d *Desk) Name() string { return d.name }

// Dir returns the spool directory (absolute).
func (d *Desk) Dir() string { return d.dir }

// RatePerMinute returns the desk's configured delivery rate cap (0 = none).
func (d *Desk) RatePerMinute() int { return d.rate }

// Send writes the bundle (when the body carries its content) and then the
// event, each atomically. The ticket ID is the event file's name. Write
// failures are retryable (a full disk gets emptied); a body that is not a
// desk event, or whose bundle does not match its sha256, is not.
func (d *Desk) Send(ctx context.Context, m desk.Message) (ticketID string, retryable bool, err error) {
	if err := ctx.Err(); err != nil {
		return "", true, &desk.Error{Reason: desk.ReasonWrite, Err: err}
	}
	var ev rma.DeskEvent
	if err := json.Unmarshal(m.Body, &ev); err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("event %s is not a desk event: %w", m.Delivery.IdempotencyKey, err)}
	}
	caseID := m.Delivery.CaseID
	if caseID == "" {
		caseID = ev.Case.ID
	}
	seq := m.Delivery.Seq
	if seq == 0 {
		seq = ev.Sequence
	}
	base := FileBase(caseID, seq)
	if ev.Bundle != nil && ev.Bundle.ContentBase64 != "" {
		content, err := base64.StdEncoding.DecodeString(ev.Bundle.ContentBase64)
		if err != nil {
			return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("event %s: bundle content is not base64: %w", base, err)}
		}
		sum := sha256.Sum256(content)
		if ev.Bundle.SHA256 != "" && !strings.EqualFold(ev.Bundle.SHA256, hex.EncodeToString(sum[:])) {
			return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("event %s: bundle content does not match its sha256", base)}
		}
		if err := writeAtomic(d.dir, BundleFile(caseID, seq, ev.Bundle.Name), content); err != nil {
			return "", true, &desk.Error{Reason: desk.ReasonWrite, Err: err}
		}
		ev.Bundle.ContentBase64 = ""
	}
	out, err := json.MarshalIndent(ev, "", "  ")
	if err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("event %s: %w", base, err)}
	}
	name := base + ".json"
	if err := writeAtomic(d.dir, name, append(out, '\n')); err != nil {
		return "", true, &desk.Error{Reason: desk.ReasonWrite, Err: err}
	}
	return name, false, nil
}

// FileBase is "<case-id>-<seq>" with every character that is not a letter,
// digit, '.', '_' or '-' replaced by '_' (and no leading dot).
func FileBase(caseID string, seq int) string {
	return safeName(caseID) + "-" + strconv.Itoa(seq)
}

// BundleFile is the name a bundle gets: "<case-id>-<seq>-<bundle name>".
func BundleFile(caseID string, seq int, bundleName string) string {
	n := safeName(filepath.Base(bundleName))
	if n == "" || n == "_" {
		n = "bundle.tar.gz"
	}
	return FileBase(caseID, seq) + "-" + n
}

func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || (c == '.' && i > 0)
		if !ok {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// writeAtomic writes data to dir/name through a hidden temporary file in
// dir: write, fsync, rename, fsync the directory.
func writeAtomic(dir, name string, data []byte) (err error) {
	f, err := os.CreateTemp(dir, "."+name+tmpMarker+"*")
	if err != nil {
		return fmt.Errorf("spool %s: %w", dir, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Chmod(fileMode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("spool %s: %w", name, err)
	}
	if df, derr := os.Open(dir); derr == nil {
		_ = df.Sync()
		_ = df.Close()
	}
	return nil
}

// removeStaleTemps removes temporary files a crash left behind.
func (d *Desk) removeStaleTemps() {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") || !strings.Contains(e.Name(), tmpMarker) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < staleTmp {
			continue
		}
		if err := os.Remove(filepath.Join(d.dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.logger.Warn("cannot remove a stale temporary spool file", "file", e.Name(), "err", err)
		}
	}
}
