//go:build windows

package p11

// loadError explains why the PKCS#11 library at path cannot be loaded.
func loadError(path string) string {
	return "LoadLibrary or GetProcAddress(C_GetFunctionList) failed"
}
