package desk_test

import (
	"testing"

	"github.com/hsm-agent/hsm-agent/rma/desk"
)

func TestRetryableStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status        int
		ok, retryable bool
		reason        desk.Reason
	}{
		{200, true, false, ""},
		{201, true, false, ""},
		{204, true, false, ""},
		{299, true, false, ""},
		{429, false, true, desk.ReasonStatus429},
		{500, false, true, desk.ReasonStatus5xx},
		{501, false, true, desk.ReasonStatus5xx},
		{502, false, true, desk.ReasonStatus5xx},
		{503, false, true, desk.ReasonStatus5xx},
		{599, false, true, desk.ReasonStatus5xx},
		{400, false, false, desk.ReasonStatus4xx},
		{401, false, false, desk.ReasonStatus4xx},
		{403, false, false, desk.ReasonStatus4xx},
		{404, false, false, desk.ReasonStatus4xx},
		{408, false, true, desk.ReasonTimeout},
		{410, false, false, desk.ReasonStatus4xx},
		{422, false, false, desk.ReasonStatus4xx},
		{301, false, false, desk.ReasonBadResponse},
		{302, false, false, desk.ReasonBadResponse},
		{307, false, false, desk.ReasonBadResponse},
		{100, false, false, desk.ReasonBadResponse},
		{0, false, false, desk.ReasonBadResponse},
		{999, false, false, desk.ReasonBadResponse},
	} {
		ok, retryable, reason := desk.RetryableStatus(tc.status)
		if ok != tc.ok || retryable != tc.retryable || reason != tc.reason {
			t.Errorf("RetryableStatus(%d) = %v, %v, %q; want %v, %v, %q", tc.status, ok, retryable, reason, tc.ok, tc.retryable, tc.reason)
		}
	}
}
