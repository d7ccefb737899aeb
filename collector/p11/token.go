// Package p11 is the only package that talks PKCS#11 (miekg/pkcs11 and
// crypto11). It runs inside the probe-worker child process: it loads a
// module, walks its tokens, times the checks and streams one result per token
// back to the parent as JSON. The types here are the wire format both sides share.
package p11

import "time"

// Check names, as used in results and metric labels.
const (
	CheckTokenInfo   = "token_info"
	CheckSessionOpen = "session_open"
	CheckRandom      = "random"
	CheckLoginSign   = "login_sign"

	// CheckSessionClose names the C_CloseSession stage in worker begin
	// events and Unresponsive.Check; it is not a reported check.
	CheckSessionClose = "session_close"
)

// CheckFunction names the PKCS#11 call a check of the probe makes
// ("C_GetTokenInfo" for token_info), for messages; an unknown check is
// returned as it is.
func CheckFunction(check string) string {
	switch check {
	case CheckTokenInfo:
		return "C_GetTokenInfo"
	case CheckSessionOpen:
		return "C_OpenSession"
	case CheckRandom:
		return "C_GenerateRandom"
	case CheckSessionClose:
		return "C_CloseSession"
	case CheckLoginSign:
		return "C_Login/C_Sign"
	}
	return check
}

// Token is what one probe learned about one token.
type Token struct {
	SlotID       uint     `json:"slot_id"`
	Serial       string   `json:"serial"`
	Label        string   `json:"label"`
	Model        string   `json:"model"`
	Manufacturer string   `json:"manufacturer"`
	Firmware     string   `json:"firmware"` // "major.minor"
	Hardware     string   `json:"hardware"` // "major.minor"
	Flags        []string `json:"flags"`    // lower-case CKF_ names without prefix, e.g. "user_pin_locked"
	Checks       []Check  `json:"checks"`
}

// Check is one timed PKCS#11 operation against a token.
type Check struct {
	Name     string        `json:"name"`
	OK       bool          `json:"ok"`
	Duration time.Duration `json:"duration_ns"`
	// Error is the PKCS#11 return value name (e.g. "CKR_DEVICE_ERROR") or another short reason.
	Error string `json:"error,omitempty"`
	// NotRun is set when the check was deliberately not attempted, with the
	// reason (e.g. login_sign while the token reports user_pin_locked). OK is
	// then false and Duration zero. With Error empty such a check is neither
	// a success nor a failure; with Error set, Error is the last real outcome
	// that still stands (CKR_PIN_INCORRECT while the refused PIN file has not
	// changed) and counts as that failure.
	NotRun string `json:"not_run,omitempty"`
}

// HasFlag reports whether the token carries the named flag.
// Check returns the named check of t, or nil if t has none.
func (t *Token) Check(name string) *Check {
	for i := range t.Checks {
		if t.Checks[i].Name == name {
			return &t.Checks[i]
		}
	}
	return nil
}

func (t Token) HasFlag(flag string) bool {
	for _, f := range t.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

// Token flag names the agent acts on (CKF_ names, lower case, prefix dropped).
const (
	FlagTokenInitialized  = "token_initialized"
	FlagLoginRequired     = "login_required"
	FlagUserPINCountLow   = "user_pin_count_low"
	FlagUserPINFinalTry   = "user_pin_final_try"
	FlagUserPINLocked     = "user_pin_locked"
	FlagUserPINToBeChange = "user_pin_to_be_changed"
	FlagSOPINCountLow     = "so_pin_count_low"
	FlagSOPINFinalTry     = "so_pin_final_try"
	FlagSOPINLocked       = "so_pin_locked"
	FlagWriteProtected    = "write_protected"

	FlagRNG                         = "rng"
	FlagUserPINInitialized          = "user_pin_initialized"
	FlagRestoreKeyNotNeeded         = "restore_key_not_needed"
	FlagClockOnToken                = "clock_on_token"
	FlagProtectedAuthenticationPath = "protected_authentication_path"
	FlagDualCryptoOperations        = "dual_crypto_operations"
	FlagSecondaryAuthentication     = "secondary_authentication"
	FlagSOPINToBeChanged            = "so_pin_to_be_changed"
	FlagErrorState                  = "error_state"
)
