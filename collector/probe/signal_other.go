//go:build !unix

package probe

import "syscall"

func signalName(s syscall.Signal) string { return s.String() }
