package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// TestLastSlots records where tokens were read and reads the latest slot
// of each device back, from the open store and read-only.
func TestLastSlots(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state", "hsm-agent.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	// hsm1 is recorded by serial first (no slot yet), then read in slot 7,
	// then in slot 9 (slot IDs move); hsm2 is read once; hsm3 never.
	if _, err := s.RecordSerial(ctx, "hsm1", "A", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordSerial(ctx, "hsm3", "C", t0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		device string
		seen   rma.SlotSeen
		at     time.Time
	}{
		{"hsm1", rma.SlotSeen{Serial: "A", Module: "m", SlotID: 7, Label: "a"}, t0.Add(time.Minute)},
		{"hsm2", rma.SlotSeen{Serial: "B", Module: "m", SlotID: 1<<63 + 5, Label: "b"}, t0.Add(2 * time.Minute)},
		{"hsm1", rma.SlotSeen{Serial: "A", Module: "m", SlotID: 9, Label: "a2"}, t0.Add(3 * time.Minute)},
	}
	for _, st := range steps {
		if err := s.RecordSlot(ctx, st.device, st.seen, st.at); err != nil {
			t.Fatal(err)
		}
	}
	want := []SerialRecord{
		{"hsm2", "B", t0.Add(2 * time.Minute), t0.Add(2 * time.Minute), &steps[1].seen},
		{"hsm1", "A", t0, t0.Add(3 * time.Minute), &steps[2].seen},
	}
	got, err := s.LastSlots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LastSlots:\n got %+v\nwant %+v", got, want)
	}
	// A new serial for hsm1 (a replacement not read yet) hides the old slot.
	if _, err := s.RecordSerial(ctx, "hsm1", "A2", t0.Add(4*time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Read-only while the store is open (its -shm file exists), then after close.
	for _, phase := range []string{"open", "closed"} {
		if phase == "closed" {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		before := dirState(t, filepath.Dir(path))
		got, err := ReadLastSlots(ctx, path)
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		if !reflect.DeepEqual(got, want[:1]) {
			t.Errorf("%s: ReadLastSlots:\n got %+v\nwant %+v", phase, got, want[:1])
		}
		if after := dirState(t, filepath.Dir(path)); !reflect.DeepEqual(before, after) {
			t.Errorf("%s: ReadLastSlots changed the state directory:\nbefore %v\nafter  %v", phase, before, after)
		}
	}
}

// TestReadLastSlotsNeverCreates: no database, no file afterwards.
func TestReadLastSlotsNeverCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	_, err := ReadLastSlots(context.Background(), filepath.Join(dir, "hsm-agent.db"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want an error wrapping fs.ErrNotExist, got %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadLastSlots created the state directory: %v", err)
	}
}

// dirState lists the files of dir with their size and modification time.
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %d %s", e.Name(), fi.Size(), fi.ModTime()))
	}
	slices.Sort(out)
	return out
}
