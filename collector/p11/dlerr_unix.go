//go:build !windows

package p11

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// loadError returns why dlopen or C_GetFunctionList lookup of path fails,
// or NULL when it works. The returned string belongs to libdl (or is static).
static const char *loadError(const char *path) {
	void *h = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		return e ? e : "dlopen failed";
	}
	void *sym = dlsym(h, "C_GetFunctionList");
	if (sym == NULL) {
		dlclose(h);
		return "the library has no C_GetFunctionList symbol: not a PKCS#11 module";
	}
	dlclose(h);
	return NULL;
}
*/
import "C"

import "unsafe"

// loadError explains why the PKCS#11 library at path cannot be loaded.
func loadError(path string) string {
	cs := C.CString(path)
	defer C.free(unsafe.Pointer(cs))
	if e := C.loadError(cs); e != nil {
		return C.GoString(e)
	}
	return "the library loaded on a second try; cannot tell why the first failed"
}
