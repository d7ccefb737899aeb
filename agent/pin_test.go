package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/pkcs11test"
	"github.com/hsm-agent/hsm-agent/rma"
)

// TestWrongPINIsNotADeadHSM (issue 7 item 5): a device whose PIN file
// holds a wrong PIN gets an operational login_refused case at the internal
// desk only, stays hsm_up 1, and still counts as a healthy member of its
// pool: when its neighbour fails, the neighbour's case has the severity it
// would have with that device healthy (2, no page), not 1.
func TestWrongPINIsNotADeadHSM(t *testing.T) {
	t.Parallel()
	s := newE2ESite(t, 2)
	pinFile := filepath.Join(s.dir, "hsm-a.pin")
	if err := os.WriteFile(pinFile, []byte("0000\n"), 0o600); err != nil { // the token's PIN is pkcs11test.DefaultPIN
		t.Fatal(err)
	}
	prod := "environment: production, pool: duo, contract: {id: C-1, tier: premium-plus, expires: 2030-01-31, region: emea}"
	s.write(t, siteConfig{
		Settings: "selftest_interval: 1s\n",
		Pools:    "  - {name: duo, min_healthy: 1}\n",
		Devices:  s.device(0, "hsm-a", fmt.Sprintf("pin_file: %q, %s", pinFile, prod)) + s.device(1, "hsm-b", prod),
	}, testTimings)
	ra := startE2E(t, s)
	a, b := s.serial(0), s.serial(1)

	key := rma.DedupKey(a, rma.KindOperational, rma.ClassLoginRefused)
	waitUntil(t, e2eWait, "the login_refused case of hsm-a at the internal desk", func() bool {
		return len(where(s.desk.accepted("internal"), func(c deskCall) bool { return c.Event.Case.DedupKey == key })) == 1
	})
	dev := ra.devices(t)["hsm-a"]
	if dev.Kind != "operational" || !strings.Contains(dev.Reason, "CKR_PIN_INCORRECT") {
		t.Errorf("hsm-a: want an operational finding naming CKR_PIN_INCORRECT, got %s/%s: %s", dev.State, dev.Kind, dev.Reason)
	}
	up := regexp.MustCompile(`(?m)^hsm_up\{device="hsm-a",serial="` + a + `"\} (\d)$`)
	if m := up.FindStringSubmatch(ra.metrics(t)); m == nil || m[1] != "1" {
		t.Errorf("a wrong PIN must keep hsm_up 1 for hsm-a, got %v", m)
	}
	if v := bySerial(s.desk.all("vendor"), a); len(v) != 0 {
		t.Errorf("an operational fault reached the vendor:%s", describeCalls(v))
	}
	if p := bySerial(s.desk.all("pager"), a); len(p) != 0 {
		t.Errorf("an operational fault paged:%s", describeCalls(p))
	}

	// The neighbour fails: hsm-a (PIN refused, HSM working) is still a
	// healthy member of the pool, so this is severity 2, not 1.
	setFault(t, s, 1, pkcs11test.FaultMissing, "")
	waitUntil(t, e2eWait, "the vendor case of hsm-b", func() bool { return len(bySerial(s.desk.accepted("vendor"), b)) == 1 })
	ev := bySerial(s.desk.accepted("vendor"), b)[0].Event
	if ev.Case.Severity != 2 || ev.Case.Fault != rma.ClassMissing {
		t.Errorf("hsm-b missing with hsm-a up in pool duo: want severity 2, got %d (%s), impact %q", ev.Case.Severity, ev.Case.Fault, ev.Case.Impact)
	}
	if p := bySerial(s.desk.all("pager"), b); len(p) != 0 {
		t.Errorf("severity 2 must not page:%s", describeCalls(p))
	}
}
