package collector

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/p11"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// A vendor library that prints a banner and chatters on stdout and stderr
// at every call: every device stays healthy, poll after poll.
func TestE2EChattyLibraryStaysHealthy(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil)
	r.setModule(pkcs11test.FaultChatter, "")
	for range 3 {
		r.allHealthy(r.poll(false))
	}
	r.allHealthy(r.poll(true))
}

// A crashing token (every call on it aborts, so before its serial is read)
// is one device's module_error: its neighbours stay healthy and the module
// status counts the crash.
func TestE2ECrashingTokenIsOneDevice(t *testing.T) {
	t.Parallel()
	r := newRig(t, 3, nil)
	r.allHealthy(r.poll(false))
	r.set(r.serial(1), pkcs11test.FaultCrash, "")
	for _, fresh := range []bool{false, true} {
		s := r.poll(fresh)
		expect(t, s, "dev-1", StateModuleError, KindOperational, "SIGABRT in C_GetTokenInfo")
		r.allHealthy(s, "dev-1")
		if m, _ := s.Module("soft"); m.Success() || m.Crashed != 1 {
			t.Errorf("module status %+v, want one crashed token and no success", m)
		}
	}
}

// A segfault in one token's call: the reason names the signal, the call and
// the slot, never the Go runtime's register dump.
func TestE2ESegfaultReasonIsNotARegisterDump(t *testing.T) {
	t.Parallel()
	r := newRig(t, 2, nil)
	r.allHealthy(r.poll(false))
	r.set(r.serial(0), pkcs11test.FaultSegv, "C_OpenSession")
	s := r.poll(false)
	d := expect(t, s, "dev-0", StateModuleError, KindOperational, "SIGSEGV in C_OpenSession on slot")
	for _, dump := range []string{"rip", "goroutine", "PC="} {
		if strings.Contains(d.Reason, dump) {
			t.Errorf("reason %q quotes the crash dump (%q)", d.Reason, dump)
		}
	}
	r.allHealthy(s, "dev-0")
}

// A slow token is charged for its own time: the neighbours, whose
// self-tests must walk past it, stay healthy.
func TestE2ESlowTokenDoesNotFailItsNeighbours(t *testing.T) {
	t.Parallel()
	pin := t.TempDir() + "/pin"
	if err := os.WriteFile(pin, []byte(pkcs11test.DefaultPIN), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, 3, func(c *config.Config) {
		c.ProbeTimeout = 2 * time.Second
		for i := range c.Devices {
			c.Devices[i].PINFile = pin
		}
	})
	// Two of three tokens are slow (under slow_threshold, together past
	// probe_timeout): every self-test's slot walk passes one.
	for i := range 2 {
		r.set(r.serial(i), pkcs11test.FaultSlow, "1200:C_GetTokenInfo")
	}
	s := r.poll(false)
	r.allHealthy(s)
	for _, d := range s.Devices {
		if c := checkNamed(d, "login_sign"); c == nil || !c.OK {
			t.Errorf("%s login_sign %+v, want OK", d.Device, c)
		}
	}
}

func checkNamed(d DeviceStatus, name string) *p11.Check {
	for i := range d.Checks {
		if d.Checks[i].Name == name {
			return &d.Checks[i]
		}
	}
	return nil
}
