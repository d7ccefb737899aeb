package pkcs11test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
)

func TestFleet(t *testing.T) {
	t.Parallel()
	f := newTestFleet(t, 3)
	if len(f.Tokens) != 3 {
		t.Fatalf("fleet has %d tokens, want 3", len(f.Tokens))
	}
	serials := f.Serials()
	if len(slices.Compact(slices.Sorted(slices.Values(serials)))) != 3 {
		t.Fatalf("serials not distinct: %v", serials)
	}

	// Through the real SoftHSM2 library: every token is there with its
	// serial and label, and takes its PIN.
	c := startChild(t, SoftHSMLibrary, f.Env())
	c.ok(request{Op: "init"})
	r := c.ok(request{Op: "tokens"})
	got := serialSlots(r)
	if len(got) != 3 {
		t.Fatalf("PKCS#11 shows %d tokens (%v), want 3", len(got), r.Tokens)
	}
	for i, tok := range f.Tokens {
		slot, ok := got[tok.Serial]
		if !ok {
			t.Fatalf("token %s not visible through PKCS#11: %v", tok.Serial, r.Tokens)
		}
		if want := fmt.Sprintf("token-%d", i); tok.Label != want {
			t.Errorf("label %q, want %q", tok.Label, want)
		}
		for _, ti := range r.Tokens {
			if ti.Serial == tok.Serial && ti.Label != tok.Label {
				t.Errorf("token %s: PKCS#11 label %q, want %q", tok.Serial, ti.Label, tok.Label)
			}
		}
		c.ok(request{Op: "login", Slot: slot, PIN: tok.PIN})
		c.ok(request{Op: "random", Slot: slot})
		if r := c.do(request{Op: "login", Slot: slot, PIN: "0000"}); r.Err != "CKR_PIN_INCORRECT" {
			t.Errorf("wrong PIN on %s: %q, want CKR_PIN_INCORRECT", tok.Serial, r.Err)
		}
	}

	// Delete one, add one: a fresh C_Initialize sees the change.
	gone := f.Tokens[1].Serial
	if err := f.DeleteToken(gone); err != nil {
		t.Fatal(err)
	}
	added, err := f.AddToken("added")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(serials, added.Serial) {
		t.Fatalf("new token reuses serial %s", added.Serial)
	}
	c2 := startChild(t, SoftHSMLibrary, f.Env())
	c2.ok(request{Op: "init"})
	got = serialSlots(c2.ok(request{Op: "tokens"}))
	want := []string{f.Tokens[0].Serial, f.Tokens[1].Serial, added.Serial}
	if len(got) != 3 || f.Tokens[2] != added {
		t.Fatalf("after delete+add PKCS#11 shows %v, fleet %v, want %v", got, f.Tokens, want)
	}
	for _, s := range want {
		if _, ok := got[s]; !ok {
			t.Errorf("token %s not visible after delete+add: %v", s, got)
		}
	}
	if _, ok := got[gone]; ok {
		t.Errorf("deleted token %s still visible", gone)
	}
	c2.ok(request{Op: "login", Slot: got[added.Serial], PIN: added.PIN})

	if err := f.DeleteToken("nosuchserial"); err == nil {
		t.Error("DeleteToken of an unknown serial: no error")
	}
	if _, err := f.AddToken("a-label-that-is-longer-than-32-bytes"); err == nil {
		t.Error("AddToken with a 36-byte label: no error")
	}
}

func TestCachedFleet(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "fleet")
	a, err := CachedFleet(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	b, err := CachedFleet(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Serials(), b.Serials()) {
		t.Fatalf("cached fleet not reused: %v then %v", a.Serials(), b.Serials())
	}
	if b.Tokens[0].PIN != DefaultPIN {
		t.Fatalf("cached fleet token PIN not restored")
	}
	c, err := CachedFleet(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tokens) != 4 || slices.Contains(c.Serials(), a.Tokens[0].Serial) {
		t.Fatalf("CachedFleet(4) over a 3-token fleet: %v", c.Serials())
	}
	got, err := c.ShowSlots()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("softhsm2-util shows %d tokens, want 4", len(got))
	}
}

// BenchmarkCreateFleet measures fleet creation (run with -bench CreateFleet).
func BenchmarkCreateFleet(b *testing.B) {
	for _, n := range []int{3, 100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := CreateFleet(b.TempDir(), n, "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
