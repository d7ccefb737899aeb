package rma

import (
	"strings"
	"testing"
	"time"
)

// TestSeverity has one row per example of support-model.md section 2 that
// the agent can observe, and one per rule under the table.
func TestSeverity(t *testing.T) {
	t.Parallel()
	const (
		prod = "production"
		np   = "non-production"
		dev  = "development"
	)
	type in = SeverityInput
	rows := []struct {
		name   string
		in     SeverityInput
		want   int
		impact string // a part the impact must contain
	}{
		// Severity 1: production cannot do essential work.
		{"1: production HSM failed, its pool has no healthy member left",
			in{Kind: KindHardware, Class: ClassFailed, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 1, HealthyLeft: 0},
			1, "pool payments: 0 of min 1 healthy members left"},
		{"1: production HSM unreachable (unresponsive), no healthy member left",
			in{Kind: KindHardware, Class: ClassUnresponsive, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 1},
			1, "production device unresponsive; pool payments: 0 of min 1"},
		{"1: production HSM missing, fewer than min_healthy left",
			in{Kind: KindHardware, Class: ClassMissing, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 2, HealthyLeft: 1},
			1, "pool payments: 1 of min 2 healthy members left"},
		{"1: production HSM alone (no pool = a pool of one, 0 left)",
			in{Kind: KindHardware, Class: ClassMissing, Environment: prod, Commissioned: true},
			1, "no pool (a pool of one): 0 of min 0 healthy members left"},
		{"1: production pool with min_healthy 0 and no member left",
			in{Kind: KindHardware, Class: ClassFailed, Environment: prod, Commissioned: true, Pool: "p", MinHealthy: 0, HealthyLeft: 0},
			1, "pool p: 0 of min 0"},
		{"1: production crypto self-test fails (even with healthy members left)",
			in{Kind: KindHardware, Class: ClassSelfTestFailed, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 1, HealthyLeft: 3},
			1, "self-test failed: production keys unusable"},
		{"1: production keys unusable: user PIN locked, alone in its pool (availability rule)",
			in{Kind: KindOperational, Class: ClassPINLocked, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 1},
			1, "user PIN locked (keys unusable); pool payments: 0 of min 1"},
		{"1: production keys unusable: module error, no pool (availability rule)",
			in{Kind: KindOperational, Class: ClassModuleError, Environment: prod, Commissioned: true},
			1, "module error (keys unusable)"},

		// Severity 2: production impaired, or non-production down.
		{"2: production HSM failed, pool keeps enough healthy members",
			in{Kind: KindHardware, Class: ClassFailed, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 1, HealthyLeft: 1},
			2, "pool payments: 1 of min 1 healthy members left"},
		{"2: production HSM missing, pool keeps exactly min_healthy",
			in{Kind: KindHardware, Class: ClassMissing, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 2, HealthyLeft: 2},
			2, "2 of min 2"},
		{"2: production PIN locked with healthy members left (availability rule)",
			in{Kind: KindOperational, Class: ClassPINLocked, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 1, HealthyLeft: 2},
			2, "2 of min 1"},
		{"2: production latency over the warning threshold (slow)",
			in{Kind: KindHardware, Class: ClassSlow, Environment: prod, Commissioned: true},
			2, "warning threshold"},
		{"2: development HSM down (missing)",
			in{Kind: KindHardware, Class: ClassMissing, Environment: dev, Commissioned: true},
			2, "development device down"},
		{"2: test (non-production) HSM failed",
			in{Kind: KindHardware, Class: ClassFailed, Environment: np, Commissioned: true},
			2, "non-production device down"},
		{"2: development HSM unresponsive",
			in{Kind: KindHardware, Class: ClassUnresponsive, Environment: dev, Commissioned: true},
			2, "development device down"},
		{"2: development self-test failed",
			in{Kind: KindHardware, Class: ClassSelfTestFailed, Environment: dev, Commissioned: true},
			2, "development"},
		{"2: non-production module error (down)",
			in{Kind: KindOperational, Class: ClassModuleError, Environment: np, Commissioned: true},
			2, "non-production device down"},

		// Severity 3: non-critical anomaly.
		{"3: firmware below the approved minimum",
			in{Kind: KindFirmware, Class: ClassBelowMinimum, Environment: prod, Commissioned: true},
			3, "below the approved minimum"},
		{"3: firmware not approved",
			in{Kind: KindFirmware, Class: ClassNotApproved, Environment: prod, Commissioned: true},
			3, "not in the approved list"},
		{"3: a non-production anomaly (slow development HSM)",
			in{Kind: KindHardware, Class: ClassSlow, Environment: dev, Commissioned: true},
			3, "non-production anomaly"},
		{"3: PIN retry counter low",
			in{Kind: KindOperational, Class: ClassPINCountLow, Environment: prod, Commissioned: true},
			3, "retry counter low"},
		{"3: login refused (impact unknown)",
			in{Kind: KindOperational, Class: ClassLoginRefused, Environment: prod, Commissioned: true},
			3, "unknown"},
		{"3: contract expired",
			in{Kind: KindContract, Class: ClassExpired, Environment: prod, Commissioned: true},
			3, "expired"},

		// Severity 4: information.
		{"4: contract expiring soon",
			in{Kind: KindContract, Class: ClassExpiring, Environment: prod, Commissioned: true},
			4, "expiring"},

		// Rules: unknown impact -> 3.
		{"rule: unknown class -> 3 (e.g. clock drift, not observed)",
			in{Kind: KindHardware, Class: "clock_drift", Environment: prod, Commissioned: true},
			3, "impact unknown"},
		{"rule: unknown kind -> 3",
			in{Kind: "inventory", Class: "drift", Environment: prod, Commissioned: true},
			3, "impact unknown"},
		{"rule: unknown environment -> 3",
			in{Kind: KindHardware, Class: ClassMissing, Environment: "", Commissioned: true},
			3, "impact unknown"},
		{"rule: unknown environment, self-test -> 3",
			in{Kind: KindHardware, Class: ClassSelfTestFailed, Environment: "lab", Commissioned: true},
			3, "impact unknown"},
		{"rule: pool health unknown -> 3",
			in{Kind: KindHardware, Class: ClassFailed, Environment: prod, Commissioned: true, Pool: "payments", MinHealthy: 1, HealthUnknown: true},
			3, "impact unknown"},

		// Rules: commissioned: false caps at 3.
		{"rule: commissioned false caps 1 at 3",
			in{Kind: KindHardware, Class: ClassMissing, Environment: prod, Commissioned: false},
			3, "capped at 3: the device is not commissioned"},
		{"rule: commissioned false caps 2 at 3",
			in{Kind: KindHardware, Class: ClassMissing, Environment: dev, Commissioned: false},
			3, "capped at 3"},
		{"rule: commissioned false caps a self-test failure at 3",
			in{Kind: KindHardware, Class: ClassSelfTestFailed, Environment: prod, Commissioned: false},
			3, "capped at 3"},
		{"rule: commissioned false leaves 4 at 4",
			in{Kind: KindContract, Class: ClassExpiring, Environment: prod, Commissioned: false},
			4, "expiring"},
		{"rule: commissioned false leaves 3 at 3",
			in{Kind: KindFirmware, Class: ClassBelowMinimum, Environment: prod, Commissioned: false},
			3, "below"},
	}
	for _, r := range rows {
		sev, impact := Severity(r.in)
		if sev != r.want || !strings.Contains(impact, r.impact) {
			t.Errorf("%s:\n got %d %q\nwant %d, impact containing %q", r.name, sev, impact, r.want, r.impact)
		}
	}
}

func TestResponseTarget(t *testing.T) {
	t.Parallel()
	for sev, want := range map[int]time.Duration{1: 30 * time.Minute, 2: 2 * time.Hour, 3: 8 * time.Hour, 4: 48 * time.Hour} {
		if got := ResponseTarget(sev); got != want {
			t.Errorf("ResponseTarget(%d) = %s, want %s", sev, got, want)
		}
	}
}

func TestNewCaseID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := NewCaseID()
		if len(id) != 13 || !strings.HasPrefix(id, "HA-") {
			t.Fatalf("NewCaseID() = %q, want HA- and 10 characters", id)
		}
		for _, c := range id[3:] {
			if !strings.ContainsRune(crockford, c) {
				t.Fatalf("NewCaseID() = %q: %q is not Crockford base32", id, c)
			}
		}
		if seen[id] {
			t.Fatalf("NewCaseID() repeated %q", id)
		}
		seen[id] = true
	}
}
