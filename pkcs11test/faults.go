package pkcs11test

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Fault is one kind of fault the fault module can inject. Its value is also
// the name of the control file the module reads.
type Fault string

// Faults on one token (Faults.Set) and on the whole module (Faults.SetModule).
const (
	// FaultMissing leaves the token's slot out of C_GetSlotList; calls on
	// it return CKR_TOKEN_NOT_PRESENT. Value ignored.
	FaultMissing Fault = "missing"
	// FaultDeviceError makes calls return CKR_DEVICE_ERROR. Value: comma
	// list of function names, empty = every call on the token.
	FaultDeviceError Fault = "device_error"
	// FaultHang blocks calls until the fault is cleared. Value as for
	// FaultDeviceError.
	FaultHang Fault = "hang"
	// FaultSlow sleeps before calls. Value: "MS" or "MS:C_Fn,C_Fn".
	FaultSlow Fault = "slow"
	// FaultFirmware makes C_GetTokenInfo report this firmware ("12.50").
	FaultFirmware Fault = "firmware"
	// FaultSerial makes C_GetTokenInfo report this serial (at most 16 bytes).
	FaultSerial Fault = "serial"
	// FaultLabel makes C_GetTokenInfo report this label (at most 32 bytes,
	// any bytes but a trailing space: control characters are welcome).
	FaultLabel Fault = "label"
	// FaultFlags ORs the named token flags (p11 Flag* names, comma list)
	// into C_GetTokenInfo; a name with a leading "-" clears that flag.
	FaultFlags Fault = "flags"
	// FaultCrash calls abort() inside calls. Value as for FaultDeviceError.
	FaultCrash Fault = "crash"
	// FaultInitError (module only) makes C_Initialize return CKR_GENERAL_ERROR.
	FaultInitError Fault = "init_error"
	// FaultSegv writes through a null pointer inside calls: a real SIGSEGV,
	// which the Go runtime of the probe worker reports with a register
	// dump. Value as for FaultDeviceError.
	FaultSegv Fault = "segv"
	// FaultChatter writes a line to stdout and one to stderr at every call,
	// as vendor libraries do; as a module fault present when the module
	// loads it also prints a banner then. Value ignored.
	FaultChatter Fault = "chatter"
	// FaultFlood writes BYTES of output to stdout without a line break.
	// Value: "BYTES" or "BYTES:C_Fn,C_Fn" (module fault: C_GetSlotList
	// unless functions are named).
	FaultFlood Fault = "flood"
)

// Environment variables the fault module reads when it is loaded.
const (
	EnvControlDir = "HSMFAULT_DIR"     // the control directory
	EnvLibrary    = "HSMFAULT_LIBRARY" // the real module (default SoftHSMLibrary)
)

// moduleScope is the control sub-directory of module-wide faults.
const moduleScope = "_module"

// Faults is the control directory of the fault module. Layout:
//
//	Dir/<serial>/<fault>   a fault on the token whose real serial is <serial>
//	Dir/_module/<fault>    a module-wide fault
//
// with the fault's value as the file content. The module re-reads it at
// every PKCS#11 call, so changes apply to processes already running.
type Faults struct{ Dir string }

// NewFaults creates (if needed) the control directory dir.
func NewFaults(dir string) (*Faults, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pkcs11test: fault dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("pkcs11test: create fault dir: %w", err)
	}
	return &Faults{Dir: abs}, nil
}

// Env returns the environment a process loading the fault module needs:
// the control directory and the real library (SoftHSM2).
func (f *Faults) Env() map[string]string {
	return map[string]string{EnvControlDir: f.Dir, EnvLibrary: SoftHSMLibrary}
}

var tokenFaults = map[Fault]bool{
	FaultMissing: true, FaultDeviceError: true, FaultHang: true, FaultSlow: true,
	FaultFirmware: true, FaultSerial: true, FaultLabel: true, FaultFlags: true, FaultCrash: true,
	FaultSegv: true, FaultChatter: true, FaultFlood: true,
}

var moduleFaults = map[Fault]bool{
	FaultInitError: true, FaultCrash: true, FaultHang: true, FaultSlow: true, FaultDeviceError: true,
	FaultSegv: true, FaultChatter: true, FaultFlood: true,
}

// flagNames are the token flag names the module understands.
var flagNames = map[string]bool{
	"rng": true, "write_protected": true, "login_required": true, "user_pin_initialized": true,
	"restore_key_not_needed": true, "clock_on_token": true, "protected_authentication_path": true,
	"dual_crypto_operations": true, "token_initialized": true, "secondary_authentication": true,
	"user_pin_count_low": true, "user_pin_final_try": true, "user_pin_locked": true,
	"user_pin_to_be_changed": true, "so_pin_count_low": true, "so_pin_final_try": true,
	"so_pin_locked": true, "so_pin_to_be_changed": true, "error_state": true,
}

// Set puts a fault on the token whose real serial is serial.
func (f *Faults) Set(serial string, fault Fault, value string) error {
	if err := checkSerial(serial); err != nil {
		return err
	}
	if !tokenFaults[fault] {
		return fmt.Errorf("pkcs11test: %q is not a token fault (want one of missing, device_error, hang, slow, firmware, serial, label, flags, crash, segv, chatter, flood)", fault)
	}
	if err := checkValue(fault, value); err != nil {
		return err
	}
	return f.write(serial, fault, value)
}

// Clear removes one fault from a token; clearing an absent fault is not an error.
func (f *Faults) Clear(serial string, fault Fault) error {
	if err := checkSerial(serial); err != nil {
		return err
	}
	return f.remove(serial, fault)
}

// ClearToken removes every fault of one token; the others keep theirs.
func (f *Faults) ClearToken(serial string) error {
	if err := checkSerial(serial); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(f.Dir, serial)); err != nil {
		return fmt.Errorf("pkcs11test: clear faults of %s: %w", serial, err)
	}
	return nil
}

// SetModule puts a module-wide fault: FaultInitError, FaultChatter, or
// FaultCrash, FaultSegv, FaultHang, FaultSlow, FaultDeviceError, FaultFlood
// in the named functions (empty value: C_GetSlotList; for FaultSlow "MS" or
// "MS:C_Fn,C_Fn", for FaultFlood "BYTES" or "BYTES:C_Fn,C_Fn").
func (f *Faults) SetModule(fault Fault, value string) error {
	if !moduleFaults[fault] {
		return fmt.Errorf("pkcs11test: %q is not a module fault (want one of init_error, crash, segv, hang, slow, device_error, chatter, flood)", fault)
	}
	if err := checkValue(fault, value); err != nil {
		return err
	}
	return f.write(moduleScope, fault, value)
}

// ClearModule removes one module-wide fault.
func (f *Faults) ClearModule(fault Fault) error {
	return f.remove(moduleScope, fault)
}

// ClearModuleAll removes every module-wide fault; token faults stay.
func (f *Faults) ClearModuleAll() error {
	if err := os.RemoveAll(filepath.Join(f.Dir, moduleScope)); err != nil {
		return fmt.Errorf("pkcs11test: clear module faults: %w", err)
	}
	return nil
}

// ClearAll removes every fault, releasing any call blocked by FaultHang.
func (f *Faults) ClearAll() error {
	ents, err := os.ReadDir(f.Dir)
	if err != nil {
		return fmt.Errorf("pkcs11test: clear faults: %w", err)
	}
	var errs []error
	for _, e := range ents {
		errs = append(errs, os.RemoveAll(filepath.Join(f.Dir, e.Name())))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pkcs11test: clear faults: %w", err)
	}
	return nil
}

func checkSerial(serial string) error {
	if serial == "" || serial == moduleScope || strings.ContainsAny(serial, "/\x00") || strings.HasPrefix(serial, ".") {
		return fmt.Errorf("pkcs11test: bad token serial %q for a fault", serial)
	}
	return nil
}

func checkValue(fault Fault, value string) error {
	switch fault {
	case FaultSlow, FaultFlood:
		ms, _, _ := strings.Cut(value, ":")
		if n, err := strconv.Atoi(ms); err != nil || n <= 0 {
			unit := map[Fault]string{FaultSlow: "milliseconds", FaultFlood: "bytes"}[fault]
			return fmt.Errorf("pkcs11test: %s fault value %q: want %s > 0, optionally followed by :C_Fn,C_Fn", fault, value, unit)
		}
	case FaultFirmware:
		maj, min, ok := strings.Cut(value, ".")
		_, err1 := strconv.ParseUint(maj, 10, 8)
		_, err2 := strconv.ParseUint(min, 10, 8)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("pkcs11test: firmware fault value %q: want \"major.minor\", each 0-255", value)
		}
	case FaultSerial:
		if value == "" || len(value) > 16 {
			return fmt.Errorf("pkcs11test: serial fault value %q: want 1 to 16 bytes", value)
		}
	case FaultLabel:
		if value == "" || len(value) > 32 {
			return fmt.Errorf("pkcs11test: label fault value %q: want 1 to 32 bytes", value)
		}
	case FaultFlags:
		for _, name := range strings.Split(value, ",") {
			name = strings.TrimPrefix(strings.TrimSpace(name), "-")
			if !flagNames[name] {
				return fmt.Errorf("pkcs11test: flags fault value %q: unknown flag %q (use lower-case CKF_ names without prefix, e.g. user_pin_locked)", value, name)
			}
		}
	case FaultDeviceError, FaultHang, FaultCrash, FaultSegv:
		for _, fn := range strings.Split(value, ",") {
			if fn = strings.TrimSpace(fn); fn != "" && !strings.HasPrefix(fn, "C_") {
				return fmt.Errorf("pkcs11test: %s fault value %q: %q is not a PKCS#11 function name (C_...)", fault, value, fn)
			}
		}
	}
	return nil
}

// write stores the value atomically (temp file + rename), so the module
// never reads half a value.
func (f *Faults) write(scope string, fault Fault, value string) error {
	dir := filepath.Join(f.Dir, scope)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pkcs11test: set fault %s on %s: %w", fault, scope, err)
	}
	tmp, err := os.CreateTemp(f.Dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("pkcs11test: set fault %s on %s: %w", fault, scope, err)
	}
	_, werr := tmp.WriteString(value)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pkcs11test: set fault %s on %s: %w", fault, scope, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, string(fault))); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("pkcs11test: set fault %s on %s: %w", fault, scope, err)
	}
	return nil
}

func (f *Faults) remove(scope string, fault Fault) error {
	err := os.Remove(filepath.Join(f.Dir, scope, string(fault)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pkcs11test: clear fault %s on %s: %w", fault, scope, err)
	}
	return nil
}

//go:embed faultmod/faultmod.c faultmod/wrappers.h faultmod/pkcs11.h faultmod/pkcs11t.h faultmod/pkcs11f.h
var faultSources embed.FS

// FaultModuleName is the file name BuildFaultModule gives the module.
const FaultModuleName = "libhsmfault.so"

// faultCompile is the gcc command line, without the output path; it matches
// faultmod/Makefile.
var faultCompile = []string{"gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "faultmod.c", "-ldl", "-lpthread"}

// faultSourceHash hashes the embedded sources and the compile command.
func faultSourceHash() (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, strings.Join(faultCompile, " "))
	ents, err := faultSources.ReadDir("faultmod")
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := faultSources.ReadFile("faultmod/" + e.Name())
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", e.Name(), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BuildFaultModule compiles the fault module with gcc into
// outDir/libhsmfault.so and returns its path. It skips the build when
// outDir already holds a module built from the same sources
// (outDir/libhsmfault.so.sha256 records their hash).
func BuildFaultModule(outDir string) (string, error) {
	sum, err := faultSourceHash()
	if err != nil {
		return "", fmt.Errorf("pkcs11test: hash fault module sources: %w", err)
	}
	return buildFaultModule(outDir, sum)
}

// buildFaultModule is BuildFaultModule for sources whose hash is sum.
func buildFaultModule(outDir, sum string) (string, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("pkcs11test: fault module output dir: %w", err)
	}
	out, err := filepath.Abs(filepath.Join(outDir, FaultModuleName))
	if err != nil {
		return "", fmt.Errorf("pkcs11test: fault module output dir: %w", err)
	}
	if b, err := os.ReadFile(out + ".sha256"); err == nil && strings.TrimSpace(string(b)) == sum {
		if _, err := os.Stat(out); err == nil {
			return out, nil
		}
	}
	src, err := os.MkdirTemp("", "hsmfault-src-")
	if err != nil {
		return "", fmt.Errorf("pkcs11test: fault module build dir: %w", err)
	}
	defer os.RemoveAll(src)
	ents, _ := faultSources.ReadDir("faultmod")
	for _, e := range ents {
		b, _ := faultSources.ReadFile("faultmod/" + e.Name())
		if err := os.WriteFile(filepath.Join(src, e.Name()), b, 0o644); err != nil {
			return "", fmt.Errorf("pkcs11test: fault module build dir: %w", err)
		}
	}
	// Build next to the target, then rename: processes that have the old
	// module loaded keep it, concurrent builders do not see half a file.
	tmp, err := os.CreateTemp(outDir, ".libhsmfault-*.so")
	if err != nil {
		return "", fmt.Errorf("pkcs11test: fault module output: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := append(append([]string{}, faultCompile[1:]...), "-o", tmp.Name())
	cmd := exec.Command(faultCompile[0], args...)
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("pkcs11test: compile fault module (%s): %w: %s", strings.Join(faultCompile, " "), err, b)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("pkcs11test: fault module output: %w", err)
	}
	if err := os.WriteFile(out+".sha256", []byte(sum+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("pkcs11test: fault module output: %w", err)
	}
	return out, nil
}

var (
	faultModOnce sync.Once
	faultModPath string
	faultModErr  error
)

// CachedFaultModule builds the fault module once per process, into a
// per-user cache directory keyed by the source hash ($XDG_CACHE_HOME or
// ~/.cache, else the temp dir, under hsm-agent/faultmod/), and returns its
// path.
func CachedFaultModule() (string, error) {
	faultModOnce.Do(func() {
		sum, err := faultSourceHash()
		if err != nil {
			faultModErr = fmt.Errorf("pkcs11test: hash fault module sources: %w", err)
			return
		}
		sub := filepath.Join("hsm-agent", "faultmod", sum[:16])
		if base, err := os.UserCacheDir(); err == nil {
			if faultModPath, faultModErr = buildFaultModule(filepath.Join(base, sub), sum); faultModErr == nil {
				return
			}
		}
		tmp := filepath.Join(os.TempDir(), fmt.Sprintf("hsm-agent-%d", os.Getuid()))
		faultModPath, faultModErr = buildFaultModule(filepath.Join(tmp, sub), sum)
	})
	return faultModPath, faultModErr
}
