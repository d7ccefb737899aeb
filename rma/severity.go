package rma

import (
	"fmt"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// Severities (support-model.md section 2).
const (
	SeverityUrgent = 1 // production cannot do essential work
	SeverityHigh   = 2 // production impaired, or non-production down
	SeverityNormal = 3 // non-critical anomaly; also the default when impact is unknown
	SeverityLow    = 4 // question or information
)

// SeverityInput is everything the severity of one fault depends on.
type SeverityInput struct {
	Kind  Kind
	Class string
	// Environment is the device's: production, non-production or development.
	Environment string
	// Commissioned is false for equipment never commissioned into
	// production: severity is then capped at 3.
	Commissioned bool
	// Pool is the device's pool, "" for none (a pool of one).
	Pool string
	// MinHealthy is the pool's min_healthy (0 without a pool).
	MinHealthy int
	// HealthyLeft counts the pool's healthy members other than this device
	// (0 without a pool).
	HealthyLeft int
	// HealthUnknown is set when the health of the pool's other members could
	// not be determined; the impact is then unknown (severity 3).
	HealthUnknown bool
}

// Severity applies the severity policy of support-model.md section 2 to one
// fault and says what the severity rests on. It is a pure function.
//
// The rules, in order:
//   - contract: expiring -> 4, expired -> 3, standard tier in production -> 4;
//   - firmware end of life, below the minimum or not approved -> 3; PIN retry counter low -> 3;
//   - availability (hardware missing, failed, unresponsive; and the
//     operational faults that make the device unusable, pin_locked and
//     module_error, because with them the production keys are unusable just
//     as with a dead device): production -> 1 when no healthy member of its
//     pool is left or fewer than min_healthy (no pool = a pool of one, so 0
//     left), 2 when enough are left; non-production and development -> 2
//     ("down or failed");
//   - self-test failed (login_sign fails with a device error): production -> 1
//     (the keys cannot be used to sign), elsewhere 2;
//   - slow (a check over slow_threshold, the warning threshold; there is no
//     critical latency threshold in the configuration, so never 1):
//     production -> 2, elsewhere 3 (an anomaly);
//   - login refused (the agent's PIN was refused): whether the applications'
//     keys are affected cannot be told from here -> 3 (unknown impact);
//   - anything else, an unknown environment or unknown pool health for a
//     rule that needs them -> 3 (impact unknown);
//   - finally commissioned: false caps 1 and 2 at 3.
func Severity(in SeverityInput) (sev int, impact string) {
	sev, impact = severity(in)
	if !in.Commissioned && sev < SeverityNormal {
		sev = SeverityNormal
		impact += "; capped at 3: the device is not commissioned (commissioned: false)"
	}
	return sev, impact
}

func severity(in SeverityInput) (int, string) {
	switch in.Kind {
	case KindContract:
		switch in.Class {
		case ClassExpiring:
			return SeverityLow, "support contract expiring soon: information"
		case ClassExpired:
			return SeverityNormal, "support contract expired: no vendor support or RMA for this device"
		case ClassStandardTier:
			return SeverityLow, "production device on a standard contract: information"
		}
	case KindFirmware:
		switch in.Class {
		case ClassBelowMinimum:
			return SeverityNormal, "firmware below the approved minimum: non-critical anomaly"
		case ClassNotApproved:
			return SeverityNormal, "firmware not in the approved list: non-critical anomaly"
		case ClassEndOfLife:
			return SeverityNormal, "firmware end of life: the vendor does not service it until it is upgraded"
		}
	case KindHardware:
		switch in.Class {
		case ClassMissing, ClassFailed, ClassUnresponsive:
			return availability(in, "device "+in.Class)
		case ClassSelfTestFailed:
			return byEnvironment(in, SeverityUrgent, SeverityHigh, "crypto self-test failed: production keys unusable",
				"crypto self-test failed on a "+in.Environment+" device (down or failed)")
		case ClassSlow:
			return byEnvironment(in, SeverityHigh, SeverityNormal, "production latency over the warning threshold (slow_threshold)",
				"slow "+in.Environment+" device: non-production anomaly")
		}
	case KindOperational:
		switch in.Class {
		case ClassPINLocked:
			return availability(in, "user PIN locked (keys unusable)")
		case ClassModuleError:
			return availability(in, "PKCS#11 module error (keys unusable)")
		case ClassPINCountLow:
			return SeverityNormal, "user PIN retry counter low: non-critical anomaly"
		case ClassLoginRefused:
			return SeverityNormal, "the agent's login was refused; whether applications are affected is unknown (default 3)"
		}
	}
	return SeverityNormal, fmt.Sprintf("impact unknown for %s/%s (default 3)", in.Kind, in.Class)
}

// availability rates a device that cannot serve: in production by how many
// healthy members its pool keeps.
func availability(in SeverityInput, what string) (int, string) {
	switch in.Environment {
	case config.EnvProduction:
	case config.EnvNonProduction, config.EnvDevelopment:
		return SeverityHigh, in.Environment + " device down: " + what
	default:
		return SeverityNormal, fmt.Sprintf("%s; environment %q unknown, impact unknown (default 3)", what, in.Environment)
	}
	if in.HealthUnknown {
		return SeverityNormal, "production " + what + "; health of the other pool members unknown, impact unknown (default 3)"
	}
	pool := "no pool (a pool of one)"
	if in.Pool != "" {
		pool = "pool " + in.Pool
	}
	left := fmt.Sprintf("%s: %d of min %d healthy members left", pool, in.HealthyLeft, in.MinHealthy)
	if in.HealthyLeft == 0 || in.HealthyLeft < in.MinHealthy {
		return SeverityUrgent, "production " + what + "; " + left
	}
	return SeverityHigh, "production " + what + "; " + left
}

// byEnvironment gives prod in production and other in non-production and
// development; an unknown environment is an unknown impact.
func byEnvironment(in SeverityInput, prod, other int, prodImpact, otherImpact string) (int, string) {
	switch in.Environment {
	case config.EnvProduction:
		return prod, prodImpact
	case config.EnvNonProduction, config.EnvDevelopment:
		return other, otherImpact
	}
	return SeverityNormal, fmt.Sprintf("%s/%s on a device of unknown environment %q: impact unknown (default 3)", in.Kind, in.Class, in.Environment)
}

// ResponseTarget is the initial-response target of a severity
// (support-model.md section 3, managed SOC): 1 -> 30 min, 2 -> 2 h,
// 3 -> 8 h, 4 -> 2 days. It is wall time for now: business-hours calendars
// come with the SLA clocks of a later issue.
func ResponseTarget(sev int) time.Duration {
	switch sev {
	case SeverityUrgent:
		return 30 * time.Minute
	case SeverityHigh:
		return 2 * time.Hour
	case SeverityLow:
		return 48 * time.Hour
	}
	return 8 * time.Hour
}
