package store_test

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
	"github.com/hsm-agent/hsm-agent/rma/store"
)

func TestFollowedSerialsAndLabel(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	rec := func(device, serial string, slot bool) {
		t.Helper()
		at = at.Add(time.Minute)
		if slot {
			err = st.RecordSlot(ctx, device, rma.SlotSeen{Serial: serial, Module: "soft", SlotID: 3, Label: "lbl-" + serial}, at)
		} else {
			_, err = st.RecordSerial(ctx, device, serial, at)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rec("a", "A1", true)  // configured A1, then the agent adopted A2
	rec("a", "A2", false) // (no slot yet)
	rec("b", "B1", true)  // never replaced
	rec("c", "C0", true)  // the operator configured C1 instead of C0: nothing to follow
	rec("c", "C1", true)
	rec("d", "D1", true) // adopted D2, which the operator then gave device e
	rec("d", "D2", true)
	devices := []config.Device{{Name: "a", Serial: "A1"}, {Name: "b", Serial: "B1"}, {Name: "c", Serial: "C9"}, {Name: "d", Serial: "D1"}, {Name: "e", Serial: "D2"}, {Name: "new", Serial: "N1"}}
	got, err := st.FollowedSerials(ctx, devices)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"a": "A2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("FollowedSerials = %v, want %v", got, want)
	}
	for dev, want := range map[string]string{"a": "lbl-A1", "d": "lbl-D2", "new": ""} {
		if l, err := st.DeviceLabel(ctx, dev); err != nil || l != want {
			t.Errorf("DeviceLabel(%s) = %q, %v; want %q", dev, l, err, want)
		}
	}
}
