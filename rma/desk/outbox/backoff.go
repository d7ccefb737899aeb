package outbox

import (
	"math/rand/v2"
	"time"
)

// Backoff is min*2^n capped at max, with jitter: a random wait in the upper
// half of that, so that agents restarted together do not retry in step.
func Backoff(lo, hi time.Duration, n int) time.Duration {
	d := hi
	if n < 62 {
		if m := lo << n; m > 0 && m < hi {
			d = m
		}
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}
