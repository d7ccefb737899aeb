// Package pkcs11test provides test fixtures for hsm-agent: fleets of real
// SoftHSM2 tokens, and a fault-injecting PKCS#11 module that wraps the real
// SoftHSM2 library at the C ABI. It does not import package testing: the
// demo (in the daemon binary) uses it; the testing.TB helpers of the tests
// are in the sub-package pkcs11testtb.
//
// # Fleets
//
// CreateFleet (or pkcs11testtb.NewFleet in a test) writes
// DIR/softhsm2.conf with directories.tokendir = DIR/tokens and initialises
// N tokens labelled "<prefix>-0".."<prefix>-<N-1>" with PIN "1234" and SO
// PIN "5678". A process sees the fleet with the environment of Fleet.Env (SOFTHSM2_CONF). One token
// is initialised by SoftHSM2 (pkcs11-tool, PINs passed through the
// environment); the rest are copies of it with their own serial and label,
// which makes 1,000 tokens take well under a second. CachedFleet reuses a
// fleet between benchmark runs.
//
// # Fault module
//
// faultmod/faultmod.c builds into libhsmfault.so (BuildFaultModule,
// CachedFaultModule, pkcs11testtb.FaultModule in a test, or
// `make -C pkcs11test/faultmod OUT=...`). Its only export, C_GetFunctionList,
// loads the real module named by HSMFAULT_LIBRARY (default SoftHSMLibrary)
// and returns its function list with every function wrapped.
// Each call first reads the control directory named by HSMFAULT_DIR
// (Faults.Env gives both variables), so faults can be changed while a process
// keeps the module loaded:
//
//	HSMFAULT_DIR/<serial>/<fault>   fault on the token whose real serial is <serial>
//	HSMFAULT_DIR/_module/<fault>    module-wide fault
//
// The file's content is the fault's value; no file means no fault; Faults
// writes and removes these files. Tokens are found by the real serial from
// the real C_GetTokenInfo (cached per slot until C_Initialize/C_Finalize);
// session calls are mapped to their slot with the real C_GetSessionInfo.
//
// Token faults: missing (left out of C_GetSlotList, calls return
// CKR_TOKEN_NOT_PRESENT), device_error (CKR_DEVICE_ERROR), hang (blocks,
// polling the control file every 20 ms, until cleared), slow ("MS" or
// "MS:C_Fn,C_Fn"), crash (abort(), the process dies by SIGABRT), firmware
// ("12.50"), serial (reported serial) and flags (comma list of lower-case
// CKF_ names to set, "-name" to clear) in C_GetTokenInfo. For device_error,
// hang and crash the value is a comma list of PKCS#11 function names, empty
// meaning every call on the token. Module faults: init_error (C_Initialize
// returns CKR_GENERAL_ERROR), crash, hang, slow and device_error in the
// named functions (empty: C_GetSlotList).
package pkcs11test
