// Package realrt starts a real Request Tracker 5 (Debian's request-tracker5,
// rt5-db-sqlite and rt5-standalone) on loopback for tests, and reads its
// tickets through REST2 as root. Test support only: the daemon never
// imports it.
package realrt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is Debian's standalone Request Tracker 5 server.
const Binary = "/usr/share/request-tracker5/libexec/rt-server"

// Packages is what installs it (.ci/run and scripts/install-deps.sh do).
const Packages = "request-tracker5 rt5-db-sqlite rt5-standalone"

// Server is a Request Tracker 5 started on loopback for one test.
type Server struct {
	Base  string // http://127.0.0.1:PORT
	Start int    // the highest ticket ID when the test began (the database copy holds earlier runs' tickets)
}

// Start starts rt-server on a free loopback port and waits until REST2
// answers root:password. A missing RT fails the test: CI installs it.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("Request Tracker 5 is not installed (%v): install it with "+
			"`DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends %s` (scripts/install-deps.sh does)", err, Packages)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	var out bytes.Buffer
	cmd := exec.Command(Binary, "--port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "RT_SITE_CONFIG_DIR="+privateDB(t))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", Binary, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	r := &Server{Base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(3 * time.Minute) // generous: a loaded machine
	for {
		var q map[string]any
		if code := r.Get(t, "queue/General", nil, &q); code == http.StatusOK {
			break
		}
		select {
		case <-exited:
			t.Fatalf("rt-server exited before answering: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("rt-server on port %d did not answer REST2 within 3 minutes: %s", port, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.Start = r.MaxID(t)
	return r
}

// Where Debian's packages keep RT's site configuration and SQLite database.
const (
	siteConfigDir = "/etc/request-tracker5/RT_SiteConfig.d"
	database      = "/var/lib/dbconfig-common/sqlite3/request-tracker5/rtdb"
)

// privateDB copies the installed database and site configuration into a
// temporary directory, pointing the configuration at the copy, and returns
// the directory for RT_SITE_CONFIG_DIR: every test's RT has its own
// database, so parallel test packages never contend for one SQLite file.
func privateDB(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	db, err := os.ReadFile(database)
	if err != nil {
		t.Fatalf("Request Tracker 5's SQLite database (%v): install %s, and run the tests as root or in group www-data", err, Packages)
	}
	copyDB := filepath.Join(dir, "rtdb")
	if err := os.WriteFile(copyDB, db, 0o600); err != nil {
		t.Fatal(err)
	}
	confs, err := filepath.Glob(filepath.Join(siteConfigDir, "*.pm"))
	if err != nil || len(confs) == 0 {
		t.Fatalf("no RT site configuration in %s (%v): install %s", siteConfigDir, err, Packages)
	}
	for _, c := range confs {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(c)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	override := fmt.Sprintf("Set($DatabaseName, %q);\n1;\n", copyDB) // read last: 99 sorts after Debian's files
	if err := os.WriteFile(filepath.Join(dir, "99-hsm-agent-test.pm"), []byte(override), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Get GETs a REST2 path as root into into (when 200) and returns the status
// (0 when RT does not answer yet).
func (r *Server) Get(t testing.TB, path string, q url.Values, into any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.Base+"/REST/2.0/"+path+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("root", "password")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// MustGet is Get that fails the test unless RT answers 200.
func (r *Server) MustGet(t testing.TB, path string, q url.Values, into any) {
	t.Helper()
	if code := r.Get(t, path, q, into); code != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, code)
	}
}

// Items is a REST2 collection.
type Items struct {
	Items []map[string]any `json:"items"`
}

// MaxID is the highest ticket ID in RT.
func (r *Server) MaxID(t testing.TB) int {
	var c Items
	r.MustGet(t, "tickets", url.Values{"query": {"id > 0"}, "orderby": {"id"}, "order": {"DESC"}, "per_page": {"1"}}, &c)
	if len(c.Items) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(fmt.Sprint(c.Items[0]["id"]))
	return n
}

// Tickets returns ID -> Status of the tickets this test made for key.
func (r *Server) Tickets(t testing.TB, key string) map[string]string {
	var c Items
	r.MustGet(t, "tickets", url.Values{"query": {fmt.Sprintf("id > %d AND Subject LIKE '[hsm:%s]'", r.Start, key)},
		"fields": {"Status"}, "per_page": {"100"}}, &c)
	out := map[string]string{}
	for _, it := range c.Items {
		out[fmt.Sprint(it["id"])] = fmt.Sprint(it["Status"])
	}
	return out
}

// Transactions counts the ticket's transactions of type typ.
func (r *Server) Transactions(t testing.TB, id, typ string) int {
	var c Items
	r.MustGet(t, "ticket/"+id+"/history", url.Values{"fields": {"Type"}, "per_page": {"100"}}, &c)
	n := 0
	for _, it := range c.Items {
		if it["Type"] == typ {
			n++
		}
	}
	return n
}

// Attachment returns the content of the ticket's attachment named name.
func (r *Server) Attachment(t testing.TB, id, name string) ([]byte, bool) {
	var c Items
	r.MustGet(t, "ticket/"+id+"/attachments", url.Values{"fields": {"Filename"}, "per_page": {"100"}}, &c)
	for _, it := range c.Items {
		if it["Filename"] != name {
			continue
		}
		var a struct{ Content string }
		r.MustGet(t, "attachment/"+fmt.Sprint(it["id"]), nil, &a)
		b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(a.Content, "\n", ""))
		if err != nil {
			t.Fatalf("attachment %v: %v", it["id"], err)
		}
		return b, true
	}
	return nil, false
}
