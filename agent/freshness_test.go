package agent

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadyTurnsUnreadyWhenPollsStall: once no poll of a module completed
// within the stall limit (3 x poll_interval here), /-/ready answers 503
// naming the module, while /metrics still answers with the last poll's time.
func TestReadyTurnsUnreadyWhenPollsStall(t *testing.T) {
	t.Parallel()
	s := newSite(t, 1, "")
	// One poll an hour: after the first, the loop waits; the clock then
	// jumps past 3 intervals as a stuck loop would let it.
	b, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "poll_interval: 300ms", "poll_interval: 1h", 1)
	if cfg == string(b) {
		t.Fatal("the site's config has no poll_interval: 300ms to replace")
	}
	if err := os.WriteFile(s.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{ConfigFile: s.config, WorkerCommand: testWorker(),
			Now:     func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
			Started: func(a string) { addr <- a }})
	}()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + <-addr
	waitUntil(t, 30*time.Second, "ready after the first poll", func() bool {
		code, _, _ := httpGet(url + "/-/ready")
		return code == http.StatusOK
	})
	if code, body, _ := httpGet(url + "/metrics"); code != http.StatusOK || !strings.Contains(body, `hsm_last_poll_timestamp_seconds{module="soft"}`) ||
		!strings.Contains(body, `hsm_poll_interval_seconds{module="soft"} 3600`) {
		t.Fatalf("/metrics lacks the freshness series:\n%s", body)
	}
	skew.Store(int64(3*time.Hour + time.Minute))
	code, body, _ := httpGet(url + "/-/ready")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "module soft") || !strings.Contains(body, "stalled") {
		t.Errorf("/-/ready with the poll loop stalled: %d %q, want 503 naming module soft", code, body)
	}
}
