//go:build !unix

package p11

import "os"

// ProtocolOutput returns the descriptor a probe worker writes its events
// on. Without inherited extra descriptors (Windows) that is stdout, which
// the library then shares.
func ProtocolOutput() (*os.File, error) { return os.Stdout, nil }
