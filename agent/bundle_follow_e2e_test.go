package agent

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// TestCaseBundleFollowsWhenItCanBeWritten runs the real agent with its
// bundle directory unwritable (a file stands where the device's bundle
// directory goes, which stops root too, without a mount). The case goes
// out at once without its bundle and says why; when the directory can be
// written again the bundle follows in one case.bundle event to each desk
// that has the case, carrying the bundle, and nothing is sent twice.
func TestCaseBundleFollowsWhenItCanBeWritten(t *testing.T) {
	t.Parallel()
	s := newDevSite(t)
	blocker := filepath.Join(s.dir, "state", BundleDirName, "hsm-0")
	if err := os.MkdirAll(filepath.Dir(blocker), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	ra := startE2E(t, s)
	ra.waitHealthy(t, "hsm-0")
	setFault(t, s, 0, pkcs11test.FaultMissing, "")
	waitUntil(t, e2eWait, "the case at both desks", func() bool {
		return len(s.desk.accepted("vendor")) == 1 && len(s.desk.accepted("internal")) == 1
	})
	for _, desk := range []string{"vendor", "internal"} {
		ev := s.desk.accepted(desk)[0].Event
		if ev.Event != rma.EventOpened || ev.Bundle != nil ||
			!strings.HasPrefix(ev.BundleNote, "diagnostics bundle could not be written: ") || !strings.HasSuffix(ev.BundleNote, "; it will follow") {
			t.Errorf("%s got %s with bundle %v and note %q; want the case without bundle, saying why", desk, ev.Event, ev.Bundle, ev.BundleNote)
		}
	}

	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	// The first retry comes rma.DefaultBundleRetryInterval after the open.
	waitUntil(t, e2eWait+rma.DefaultBundleRetryInterval, "the bundle at both desks", func() bool {
		return len(s.desk.accepted("vendor")) == 2 && len(s.desk.accepted("internal")) == 2
	})
	time.Sleep(3 * time.Second) // a few more engine checks: nothing more may come
	for _, desk := range []string{"vendor", "internal"} {
		calls := s.desk.accepted(desk)
		if len(calls) != 2 {
			t.Fatalf("%s desk: %d events, want 2:%s", desk, len(calls), describeCalls(calls))
		}
		ev := calls[1].Event
		if ev.Event != rma.EventBundleAdded || ev.Bundle == nil || ev.Bundle.ContentBase64 == "" || ev.BundleNote != "" {
			t.Fatalf("%s second event %s, bundle %+v, note %q; want case.bundle with the bundle", desk, ev.Event, ev.Bundle, ev.BundleNote)
		}
		tgz, err := base64.StdEncoding.DecodeString(ev.Bundle.ContentBase64)
		if err != nil {
			t.Fatal(err)
		}
		if files := untar(t, tgz); files["manifest.json"] == nil {
			t.Errorf("%s: the bundle has no manifest.json", desk)
		}
	}
	cases := ra.allCases(t)
	if len(cases) != 1 {
		t.Fatalf("want one case, got %d", len(cases))
	}
	if _, owed := cases[0].Due[rma.DueBundle]; owed {
		t.Errorf("the case still owes its bundle: %v", cases[0].Due)
	}
}
