package outbox

import (
	"testing"
	"time"
)

func TestBackoffIsCappedExponentialWithJitter(t *testing.T) {
	t.Parallel()
	lo, hi := time.Second, time.Minute
	for n := range 70 {
		want := hi
		if n < 6 {
			want = lo << n // 1, 2, 4, 8, 16, 32 s; 64 s is past the cap
		}
		for range 50 {
			got := Backoff(lo, hi, n)
			if got < want/2 || got > want {
				t.Fatalf("Backoff(%v, %v, %d) = %v; want within [%v, %v]", lo, hi, n, got, want/2, want)
			}
		}
	}
}
