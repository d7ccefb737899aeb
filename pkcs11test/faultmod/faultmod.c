/*
 * faultmod: a fault-injecting PKCS#11 module for hsm-agent's tests.
 *
 * It loads the real module (HSMFAULT_LIBRARY, default SoftHSM2) and hands out
 * a copy of its function list in which every function first consults a
 * control directory (HSMFAULT_DIR). The directory is re-read at every call,
 * so a test can change faults while the process using the module stays
 * alive. Layout (see ../faults.go, which writes it):
 *
 *   DIR/<serial>/<fault>   a fault on the token whose real serial is <serial>
 *   DIR/_module/<fault>    a module-wide fault
 *
 * The file's content is the fault's value. Token faults: missing,
 * device_error, hang, slow, firmware, serial, label, flags, crash, segv, chatter,
 * flood. Module faults: init_error, crash, segv, hang, slow, device_error,
 * chatter, flood. For device_error, hang, crash and segv the value is an
 * optional comma list of function names (empty: every call on the token, or
 * C_GetSlotList for module faults); slow is "MS" or "MS:C_Fn,C_Fn" and flood
 * "BYTES" or "BYTES:C_Fn,C_Fn". chatter writes a line to stdout and one to
 * stderr at every call (and, as a module fault present when the module
 * loads, a banner at load), as vendor libraries do; flood writes BYTES
 * without a line break to stdout.
 *
 * Build: gcc -shared -fPIC -O2 -Wall -Werror -o libhsmfault.so faultmod.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CK_PTR *
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType(*name)
#define CK_CALLBACK_FUNCTION(returnType, name) returnType(*name)
#ifndef NULL_PTR
#define NULL_PTR 0
#endif
#include "pkcs11.h"

#define DEFAULT_LIBRARY "/usr/lib/softhsm/libsofthsm2.so"
#define MODULE_SCOPE "_module"
#define HANG_POLL_MS 20

static CK_FUNCTION_LIST_PTR real;   /* the real module's list */
static CK_FUNCTION_LIST wrapped;    /* what C_GetFunctionList hands out */
static char ctl[4096];              /* control directory, "" = no faults */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static CK_RV load_rv = CKR_GENERAL_ERROR;

/* ---- control directory ---- */

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* scope_exists reports whether DIR/<scope> exists: one stat, the fast path
 * for tokens without faults. */
static int scope_exists(const char *scope)
{
	char path[4400];
	struct stat st;
	if (ctl[0] == 0)
		return 0;
	snprintf(path, sizeof path, "%s/%s", ctl, scope);
	return stat(path, &st) == 0;
}

/* read_fault reads DIR/<scope>/<fault> into val (trimmed) and reports
 * whether the file exists. */
static int read_fault(const char *scope, const char *fault, char *val, size_t n)
{
	char path[4400];
	ssize_t got;
	int fd;
	if (ctl[0] == 0)
		return 0;
	snprintf(path, sizeof path, "%s/%s/%s", ctl, scope, fault);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	got = read(fd, val, n - 1);
	close(fd);
	if (got < 0)
		got = 0;
	val[got] = 0;
	while (got > 0 && isspace((unsigned char)val[got - 1]))
		val[--got] = 0;
	return 1;
}

/* fn_match reports whether fn is in the comma list; an empty list matches
 * every function (token faults) or only C_GetSlotList (module faults). */
static int fn_match(const char *list, const char *fn, int module)
{
	size_t fl = strlen(fn);
	const char *p = list;
	while (*p == ' ')
		p++;
	if (*p == 0)
		return module ? strcmp(fn, "C_GetSlotList") == 0 : 1;
	while (*p) {
		const char *e;
		size_t l;
		while (*p == ' ' || *p == ',')
			p++;
		e = p;
		while (*e && *e != ',')
			e++;
		l = (size_t)(e - p);
		while (l > 0 && p[l - 1] == ' ')
			l--;
		if (l == fl && strncmp(p, fn, l) == 0)
			return 1;
		p = e;
	}
	return 0;
}

/* crash kills the process with SIGABRT. The default action is restored
 * first: a Go host (the probe worker) would otherwise catch the signal and
 * exit with status 2 after a goroutine dump. */
static void crash(const char *fn)
{
	struct sigaction sa;
	fprintf(stderr, "hsmfault: crash fault in %s\n", fn);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGABRT, &sa, NULL);
	abort();
}

/* segv writes through a null pointer the compiler cannot see: a real
 * SIGSEGV inside the call, which the Go runtime of the probe worker reports
 * with a register dump. */
static int *volatile nowhere;
static void segv(const char *fn)
{
	fprintf(stderr, "hsmfault: segv fault in %s\n", fn);
	*nowhere = 1;
}

/* say writes all of s to fd, unbuffered (stdio would hold it back). */
static void say(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

/* chatter prints a line about the call to stdout and to stderr. */
static void chatter(const char *fn)
{
	char line[256];
	int n = snprintf(line, sizeof line, "hsmfault chatter: vendor library says hello from %s\n", fn);
	if (n > 0 && (size_t)n < sizeof line) {
		say(1, line, (size_t)n);
		say(2, line, (size_t)n);
	}
}

/* flood writes bytes of 'x' to stdout, without a line break. */
static void flood(long bytes)
{
	static char chunk[65536];
	if (chunk[0] == 0)
		memset(chunk, 'x', sizeof chunk);
	while (bytes > 0) {
		size_t n = bytes < (long)sizeof chunk ? (size_t)bytes : sizeof chunk;
		say(1, chunk, n);
		bytes -= (long)n;
	}
}

/* amount_match parses "N" or "N:C_Fn,C_Fn" and returns N when fn matches, else 0. */
static long amount_match(const char *v, const char *fn, int module)
{
	char *rest;
	long n = strtol(v, &rest, 10);
	if (*rest == ':')
		rest++;
	return n > 0 && fn_match(rest, fn, module) ? n : 0;
}

/* apply runs the faults of one scope for one call: it may abort, block,
 * sleep or return an error to hand back instead of calling the module. */
static CK_RV apply(const char *scope, const char *fn, int module)
{
	char v[1024];
	if (!scope_exists(scope))
		return CKR_OK;
	if (!module && read_fault(scope, "missing", v, sizeof v))
		return CKR_TOKEN_NOT_PRESENT;
	if (module && strcmp(fn, "C_Initialize") == 0 && read_fault(scope, "init_error", v, sizeof v))
		return CKR_GENERAL_ERROR;
	if (read_fault(scope, "chatter", v, sizeof v))
		chatter(fn);
	if (read_fault(scope, "flood", v, sizeof v))
		flood(amount_match(v, fn, module));
	if (read_fault(scope, "crash", v, sizeof v) && fn_match(v, fn, module))
		crash(fn);
	if (read_fault(scope, "segv", v, sizeof v) && fn_match(v, fn, module))
		segv(fn);
	while (read_fault(scope, "hang", v, sizeof v) && fn_match(v, fn, module))
		sleep_ms(HANG_POLL_MS);
	if (read_fault(scope, "slow", v, sizeof v)) {
		long ms = amount_match(v, fn, module);
		if (ms > 0)
			sleep_ms(ms);
	}
	if (read_fault(scope, "device_error", v, sizeof v) && fn_match(v, fn, module))
		return CKR_DEVICE_ERROR;
	return CKR_OK;
}

/* ---- slot -> serial cache ---- */

#define CACHE_SIZE 8192 /* power of two */
struct entry {
	CK_SLOT_ID slot;
	int used;
	char serial[17];
};
static struct entry cache[CACHE_SIZE];
static int cache_used;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

static void cache_clear(void)
{
	pthread_mutex_lock(&cache_mu);
	memset(cache, 0, sizeof cache);
	cache_used = 0;
	pthread_mutex_unlock(&cache_mu);
}

/* slot_serial finds the real serial of the token in slot (via the real
 * C_GetTokenInfo, cached) as a string fit for a path. It returns 0 for a slot
 * without an initialised token. */
static int slot_serial(CK_SLOT_ID slot, char out[17])
{
	CK_TOKEN_INFO ti;
	size_t i, h = (size_t)(slot * 2654435761u) & (CACHE_SIZE - 1);
	int n;
	pthread_mutex_lock(&cache_mu);
	for (i = h; cache[i].used; i = (i + 1) & (CACHE_SIZE - 1)) {
		if (cache[i].slot == slot) {
			memcpy(out, cache[i].serial, 17);
			pthread_mutex_unlock(&cache_mu);
			return 1;
		}
	}
	pthread_mutex_unlock(&cache_mu);

	if (real->C_GetTokenInfo(slot, &ti) != CKR_OK)
		return 0;
	memcpy(out, ti.serialNumber, 16);
	out[16] = 0;
	for (n = 16; n > 0 && (out[n - 1] == ' ' || out[n - 1] == 0); n--)
		out[n - 1] = 0;
	if (n == 0)
		return 0;
	for (i = 0; i < (size_t)n; i++)
		if (out[i] == '/' || !isprint((unsigned char)out[i]) || (i == 0 && out[i] == '.'))
			out[i] = '_';

	pthread_mutex_lock(&cache_mu);
	if (cache_used >= CACHE_SIZE / 2) {
		memset(cache, 0, sizeof cache);
		cache_used = 0;
	}
	for (i = h; cache[i].used && cache[i].slot != slot; i = (i + 1) & (CACHE_SIZE - 1))
		;
	if (!cache[i].used)
		cache_used++;
	cache[i].used = 1;
	cache[i].slot = slot;
	memcpy(cache[i].serial, out, 17);
	pthread_mutex_unlock(&cache_mu);
	return 1;
}

/* ---- hooks ---- */

static CK_RV pre_module(const char *fn)
{
	return apply(MODULE_SCOPE, fn, 1);
}

static CK_RV token_faults(const char *fn, CK_SLOT_ID slot)
{
	char serial[17];
	if (ctl[0] == 0 || !slot_serial(slot, serial))
		return CKR_OK;
	return apply(serial, fn, 0);
}

static CK_RV pre_slot(const char *fn, CK_SLOT_ID slot)
{
	CK_RV rv = pre_module(fn);
	if (rv != CKR_OK)
		return rv;
	return token_faults(fn, slot);
}

static CK_RV pre_session(const char *fn, CK_SESSION_HANDLE h)
{
	CK_SESSION_INFO si;
	CK_RV rv = pre_module(fn);
	if (rv != CKR_OK || ctl[0] == 0)
		return rv;
	if (real->C_GetSessionInfo(h, &si) != CKR_OK)
		return CKR_OK; /* let the module report the bad handle */
	return token_faults(fn, si.slotID);
}

#include "wrappers.h"

/* ---- functions with special behaviour ---- */

static CK_RV w_C_Initialize(CK_VOID_PTR args)
{
	CK_RV rv = pre_module("C_Initialize");
	if (rv != CKR_OK)
		return rv;
	cache_clear();
	return real->C_Initialize(args);
}

static CK_RV w_C_Finalize(CK_VOID_PTR reserved)
{
	CK_RV rv = pre_module("C_Finalize");
	if (rv != CKR_OK)
		return rv;
	cache_clear();
	return real->C_Finalize(reserved);
}

/* token_missing reports whether the token in slot has the missing fault. */
static int token_missing(CK_SLOT_ID slot)
{
	char serial[17], v[16];
	if (!slot_serial(slot, serial))
		return 0;
	return read_fault(serial, "missing", v, sizeof v);
}

/* w_C_GetSlotList leaves out the slots of missing tokens, in both the
 * counting and the filling call. */
static CK_RV w_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	CK_SLOT_ID_PTR all = NULL;
	CK_ULONG n = 0, i, kept = 0;
	CK_RV rv = pre_module("C_GetSlotList");
	if (rv != CKR_OK)
		return rv;
	if (ctl[0] == 0 || count == NULL)
		return real->C_GetSlotList(present, list, count);
	for (;;) {
		rv = real->C_GetSlotList(present, NULL, &n);
		if (rv != CKR_OK)
			return rv;
		free(all);
		all = calloc(n + 1, sizeof *all);
		if (all == NULL)
			return CKR_HOST_MEMORY;
		rv = real->C_GetSlotList(present, all, &n);
		if (rv == CKR_OK)
			break;
		if (rv != CKR_BUFFER_TOO_SMALL) {
			free(all);
			return rv;
		}
	}
	for (i = 0; i < n; i++)
		if (!token_missing(all[i]))
			all[kept++] = all[i];
	if (list == NULL) {
		rv = CKR_OK;
	} else if (*count < kept) {
		rv = CKR_BUFFER_TOO_SMALL;
	} else {
		memcpy(list, all, kept * sizeof *all);
		rv = CKR_OK;
	}
	*count = kept;
	free(all);
	return rv;
}

struct flag {
	const char *name;
	CK_FLAGS bit;
};
static const struct flag flags[] = {
	{ "rng", CKF_RNG },
	{ "write_protected", CKF_WRITE_PROTECTED },
	{ "login_required", CKF_LOGIN_REQUIRED },
	{ "user_pin_initialized", CKF_USER_PIN_INITIALIZED },
	{ "restore_key_not_needed", CKF_RESTORE_KEY_NOT_NEEDED },
	{ "clock_on_token", CKF_CLOCK_ON_TOKEN },
	{ "protected_authentication_path", CKF_PROTECTED_AUTHENTICATION_PATH },
	{ "dual_crypto_operations", CKF_DUAL_CRYPTO_OPERATIONS },
	{ "token_initialized", CKF_TOKEN_INITIALIZED },
	{ "secondary_authentication", CKF_SECONDARY_AUTHENTICATION },
	{ "user_pin_count_low", CKF_USER_PIN_COUNT_LOW },
	{ "user_pin_final_try", CKF_USER_PIN_FINAL_TRY },
	{ "user_pin_locked", CKF_USER_PIN_LOCKED },
	{ "user_pin_to_be_changed", CKF_USER_PIN_TO_BE_CHANGED },
	{ "so_pin_count_low", CKF_SO_PIN_COUNT_LOW },
	{ "so_pin_final_try", CKF_SO_PIN_FINAL_TRY },
	{ "so_pin_locked", CKF_SO_PIN_LOCKED },
	{ "so_pin_to_be_changed", CKF_SO_PIN_TO_BE_CHANGED },
	{ "error_state", CKF_ERROR_STATE },
};

/* apply_flags ORs in (or, for "-name", clears) the named flags. */
static void apply_flags(const char *list, CK_FLAGS *out)
{
	const char *p = list;
	while (*p) {
		const char *e;
		size_t l, i;
		int clear = 0;
		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '-') {
			clear = 1;
			p++;
		}
		e = p;
		while (*e && *e != ',')
			e++;
		l = (size_t)(e - p);
		while (l > 0 && p[l - 1] == ' ')
			l--;
		for (i = 0; i < sizeof flags / sizeof flags[0]; i++) {
			if (strlen(flags[i].name) == l && strncmp(flags[i].name, p, l) == 0) {
				if (clear)
					*out &= ~flags[i].bit;
				else
					*out |= flags[i].bit;
			}
		}
		p = e;
	}
}

/* w_C_GetTokenInfo reports the firmware, serial, label and flags faults. */
static CK_RV w_C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	char serial[17], v[1024];
	CK_RV rv = pre_slot("C_GetTokenInfo", slot);
	if (rv != CKR_OK)
		return rv;
	rv = real->C_GetTokenInfo(slot, info);
	if (rv != CKR_OK || info == NULL || ctl[0] == 0 || !slot_serial(slot, serial) || !scope_exists(serial))
		return rv;
	if (read_fault(serial, "firmware", v, sizeof v)) {
		unsigned major = 0, minor = 0;
		if (sscanf(v, "%u.%u", &major, &minor) == 2) {
			info->firmwareVersion.major = (CK_BYTE)major;
			info->firmwareVersion.minor = (CK_BYTE)minor;
		}
	}
	if (read_fault(serial, "serial", v, sizeof v)) {
		size_t l = strlen(v);
		if (l > sizeof info->serialNumber)
			l = sizeof info->serialNumber;
		memset(info->serialNumber, ' ', sizeof info->serialNumber);
		memcpy(info->serialNumber, v, l);
	}
	if (read_fault(serial, "label", v, sizeof v)) {
		size_t l = strlen(v);
		if (l > sizeof info->label)
			l = sizeof info->label;
		memset(info->label, ' ', sizeof info->label);
		memcpy(info->label, v, l);
	}
	if (read_fault(serial, "flags", v, sizeof v))
		apply_flags(v, &info->flags);
	return rv;
}

/* ---- loading ---- */

static void load(void)
{
	const char *lib = getenv("HSMFAULT_LIBRARY");
	const char *dir = getenv("HSMFAULT_DIR");
	CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
	char v[64];
	void *h;
	if (lib == NULL || lib[0] == 0)
		lib = DEFAULT_LIBRARY;
	if (dir != NULL && strlen(dir) < sizeof ctl)
		strcpy(ctl, dir);
	if (scope_exists(MODULE_SCOPE) && read_fault(MODULE_SCOPE, "chatter", v, sizeof v)) {
		static const char banner[] = "hsmfault chatter: Vendor PKCS#11 library 1.0 loaded (banner)\n";
		say(1, banner, sizeof banner - 1);
		say(2, banner, sizeof banner - 1);
	}
	h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		fprintf(stderr, "hsmfault: cannot load HSMFAULT_LIBRARY %s: %s\n", lib, dlerror());
		return;
	}
	*(void **)(&get) = dlsym(h, "C_GetFunctionList");
	if (get == NULL) {
		fprintf(stderr, "hsmfault: %s has no C_GetFunctionList\n", lib);
		return;
	}
	load_rv = get(&real);
	if (load_rv != CKR_OK)
		return;
	wrapped = *real;
	fill_wrappers(&wrapped);
	wrapped.C_Initialize = w_C_Initialize;
	wrapped.C_Finalize = w_C_Finalize;
	wrapped.C_GetFunctionList = C_GetFunctionList;
	wrapped.C_GetSlotList = w_C_GetSlotList;
	wrapped.C_GetTokenInfo = w_C_GetTokenInfo;
}

/* C_GetFunctionList is the module's only export. */
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR pp)
{
	pthread_once(&load_once, load);
	if (load_rv != CKR_OK)
		return load_rv;
	if (pp == NULL)
		return CKR_ARGUMENTS_BAD;
	*pp = &wrapped;
	return CKR_OK;
}
