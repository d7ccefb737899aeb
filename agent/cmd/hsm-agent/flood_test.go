package main

import (
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent"
	"github.com/hsm-agent/hsm-agent/pkcs11test"
)

// floodFDLimit is the descriptor limit of the flooded daemon: room for
// agent.MaxHTTPConns connections plus what the agent itself needs, far
// less than the flood.
const floodFDLimit = agent.MaxHTTPConns + 72

// TestConnectionFloodDoesNotStopPolling runs the daemon with a low
// descriptor limit and holds more idle keep-alive connections open than it
// has descriptors. Polling, which needs descriptors for fresh probe
// workers, their pipes and the desk connections, still confirms a fault
// and delivers its case; /metrics answers again once the flood is gone.
func TestConnectionFloodDoesNotStopPolling(t *testing.T) {
	t.Parallel()
	desk := newTicketDesk(t, false)
	listen := freePort(t)
	cfgFile, fleet, faults := caseSite(t, 1, listen, desk, "")
	d := startDaemonCmd(t, exec.Command("sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, floodFDLimit), binary, "run", "--config", cfgFile))
	waitMetrics(t, "http://"+listen, fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 1`, fleet.Tokens[0].Serial), 20*time.Second)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range floodFDLimit + 100 {
		c, err := net.Dial("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	if err := faults.Set(fleet.Tokens[0].Serial, pkcs11test.FaultMissing, ""); err != nil {
		t.Fatal(err)
	}
	waitUntilT(t, 60*time.Second, "the vendor ticket of the missing token during the flood", func() bool { return desk.ticketCount("vendor") == 1 })
	if strings.Contains(d.String(), "too many open files") {
		t.Errorf("the daemon ran out of descriptors:\n%s", d.String())
	}

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitMetrics(t, "http://"+listen, fmt.Sprintf(`hsm_up{device="hsm-0",serial=%q} 0`, fleet.Tokens[0].Serial), 30*time.Second)
}
