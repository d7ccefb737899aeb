package p11

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// tokenFlags maps every CKF_ token flag of PKCS#11 3.0 to its name.
var tokenFlags = []struct {
	bit  uint
	name string
}{
	{pkcs11.CKF_RNG, FlagRNG},
	{pkcs11.CKF_WRITE_PROTECTED, FlagWriteProtected},
	{pkcs11.CKF_LOGIN_REQUIRED, FlagLoginRequired},
	{pkcs11.CKF_USER_PIN_INITIALIZED, FlagUserPINInitialized},
	{pkcs11.CKF_RESTORE_KEY_NOT_NEEDED, FlagRestoreKeyNotNeeded},
	{pkcs11.CKF_CLOCK_ON_TOKEN, FlagClockOnToken},
	{pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH, FlagProtectedAuthenticationPath},
	{pkcs11.CKF_DUAL_CRYPTO_OPERATIONS, FlagDualCryptoOperations},
	{pkcs11.CKF_TOKEN_INITIALIZED, FlagTokenInitialized},
	{pkcs11.CKF_SECONDARY_AUTHENTICATION, FlagSecondaryAuthentication},
	{pkcs11.CKF_USER_PIN_COUNT_LOW, FlagUserPINCountLow},
	{pkcs11.CKF_USER_PIN_FINAL_TRY, FlagUserPINFinalTry},
	{pkcs11.CKF_USER_PIN_LOCKED, FlagUserPINLocked},
	{pkcs11.CKF_USER_PIN_TO_BE_CHANGED, FlagUserPINToBeChange},
	{pkcs11.CKF_SO_PIN_COUNT_LOW, FlagSOPINCountLow},
	{pkcs11.CKF_SO_PIN_FINAL_TRY, FlagSOPINFinalTry},
	{pkcs11.CKF_SO_PIN_LOCKED, FlagSOPINLocked},
	{pkcs11.CKF_SO_PIN_TO_BE_CHANGED, FlagSOPINToBeChanged},
	{pkcs11.CKF_ERROR_STATE, FlagErrorState},
}

// DecodeFlags turns a CK_TOKEN_INFO flags word into flag names, in bit order.
// Bits that PKCS#11 does not define are ignored.
func DecodeFlags(flags uint) []string {
	return appendFlags(make([]string, 0, 8), flags)
}

// appendFlags appends the names of the flags set in flags to names.
func appendFlags(names []string, flags uint) []string {
	for _, f := range tokenFlags {
		if flags&f.bit != 0 {
			names = append(names, f.name)
		}
	}
	return names
}

// blocksLogin reports whether the flags forbid a login attempt: one more
// wrong PIN could lock the token, or it is locked already.
func blocksLogin(flags []string) string {
	for _, f := range flags {
		if f == FlagUserPINFinalTry || f == FlagUserPINLocked {
			return f
		}
	}
	return ""
}

// BlocksLogin reports the flag (user_pin_final_try or user_pin_locked) that
// forbids a login attempt on a token with these flags, or "".
func (t Token) BlocksLogin() string { return blocksLogin(t.Flags) }

// ErrorName returns the CKR_ name of a PKCS#11 error (e.g. "CKR_DEVICE_ERROR"),
// "CKR_0x80000001" for codes without a name, or the error text for other errors.
func ErrorName(err error) string {
	if err == nil {
		return ""
	}
	var rv pkcs11.Error
	if errors.As(err, &rv) {
		return ckrName(uint(rv))
	}
	return err.Error()
}

func ckrName(rv uint) string {
	// pkcs11.Error prints "pkcs11: 0x30: CKR_DEVICE_ERROR".
	s := pkcs11.Error(rv).Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR_0x%X", rv)
}

// pinRefused reports whether a login error means the PIN itself was
// refused, so that trying it again can only count down the token's retries.
func pinRefused(err error) bool {
	var rv pkcs11.Error
	return errors.As(err, &rv) && IsPINRefused(ckrName(uint(rv)))
}

// PINRefusedErrors are the Check.Error values that mean the token refused
// the PIN; the parent stops trying a refused PIN until its file changes.
var PINRefusedErrors = []string{"CKR_PIN_INCORRECT", "CKR_PIN_INVALID", "CKR_PIN_LEN_RANGE", "CKR_PIN_EXPIRED", "CKR_PIN_LOCKED"}

// IsPINRefused reports whether a Check.Error value means the PIN was refused.
func IsPINRefused(errName string) bool {
	for _, e := range PINRefusedErrors {
		if e == errName {
			return true
		}
	}
	return false
}

// cleanText trims the blank padding and NULs PKCS#11 puts in fixed-size fields.
func cleanText(s string) string {
	return strings.TrimRight(strings.TrimSpace(s), "\x00 ")
}

func version(v pkcs11.Version) string {
	return fmt.Sprintf("%d.%d", v.Major, v.Minor)
}

// IsOperationalError reports whether a check error is the operator's to fix
// (PIN and user problems, an unreadable PIN file) rather than the hardware's.
// The collector's classification and the case kinds both rest on it.
func IsOperationalError(errName string) bool {
	u := strings.ToUpper(errName)
	return strings.HasPrefix(u, "CKR_PIN_") || strings.HasPrefix(u, "CKR_USER_") ||
		strings.Contains(u, "PIN FILE") || strings.Contains(u, "PIN REFUSED")
}
