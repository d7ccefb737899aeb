//go:build linux

package bundle

import (
	"context"
	"strings"
	"syscall"
)

// uname returns "sysname release version machine" of the running kernel.
func uname(context.Context) (string, error) {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "", err
	}
	return strings.Join([]string{cstr(u.Sysname[:]), cstr(u.Release[:]), cstr(u.Version[:]), cstr(u.Machine[:])}, " "), nil
}

// cstr converts a NUL-terminated utsname field (int8 or uint8 by platform).
func cstr[T int8 | uint8](a []T) string {
	b := make([]byte, 0, len(a))
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}
