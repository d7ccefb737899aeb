package rma

import (
	"crypto/rand"
	"encoding/binary"
)

// crockford is Crockford's base32 alphabet: no I, L, O or U, so case IDs
// read aloud over the phone without ambiguity.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// CaseIDPrefix starts every case ID.
const CaseIDPrefix = "HA-"

// NewCaseID returns a new case ID: "HA-" and 10 random Crockford base32
// characters (50 random bits), e.g. "HA-7K3QX9M2PD". It is short enough to
// read out on a call and unique in practice; the store's primary key
// rejects the (astronomically unlikely) repeat.
func NewCaseID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never returns an error (it crashes the program instead)
	n := binary.BigEndian.Uint64(b[:])
	id := make([]byte, 0, len(CaseIDPrefix)+10)
	id = append(id, CaseIDPrefix...)
	for range 10 {
		id = append(id, crockford[n&31])
		n >>= 5
	}
	return string(id)
}
