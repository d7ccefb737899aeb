package zendesk_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/desk/zendesk"
)

const (
	testEmail = "hsm-agent@example.com"
	testToken = "zd-secret-token-42"
)

// zTicket is a ticket the fake Zendesk holds.
type zTicket struct {
	ID         int64
	ExternalID string
	Subject    string
	Priority   string
	Status     string
	Comments   []map[string]any
	Idem       string
}

// zendeskServer is an httptest Zendesk Support that implements the
// documented endpoints the desk uses and checks method, path, auth and
// content types on every request (t.Errorf on a mismatch).
type zendeskServer struct {
	t       *testing.T
	mu      sync.Mutex
	tickets []*zTicket
	uploads map[string][]byte // token -> file
	creates []time.Time       // every POST /api/v2/tickets.json that reached the handler
	// beforeCreate, when set, may answer a create itself (429, 500): it
	// returns true when it did. n counts create requests from 0.
	beforeCreate func(n int, w http.ResponseWriter) bool
	srv          *httptest.Server
	// refuseQuietly answers a wrong Authorization with 401 without failing
	// the test (the desk test's auth case).
	refuseQuietly bool
	// loseFirstAnswer stores the first create's ticket but answers 500,
	// as when Zendesk's answer is lost.
	loseFirstAnswer bool
}

func newZendesk(t *testing.T) *zendeskServer {
	z := &zendeskServer{t: t, uploads: map[string][]byte{}}
	z.srv = httptest.NewServer(http.HandlerFunc(z.serve))
	t.Cleanup(z.srv.Close)
	return z
}

func (z *zendeskServer) serve(w http.ResponseWriter, r *http.Request) {
	z.mu.Lock()
	defer z.mu.Unlock()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(testEmail+"/token:"+testToken))
	if got := r.Header.Get("Authorization"); got != want {
		if !z.refuseQuietly {
			z.t.Errorf("%s %s: Authorization %q, want API token auth %q", r.Method, r.URL.Path, got, want)
		}
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !strings.HasPrefix(r.Header.Get("User-Agent"), "hsm-agent/") {
		z.t.Errorf("%s %s: User-Agent %q", r.Method, r.URL.Path, r.Header.Get("User-Agent"))
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v2/users/me.json":
		writeJSON(w, 200, map[string]any{"user": map[string]any{"id": 7, "role": "agent"}})
	case r.Method == http.MethodGet && r.URL.Path == "/api/v2/tickets.json":
		key := r.URL.Query().Get("external_id")
		var out []map[string]any
		for _, tk := range z.tickets {
			if tk.ExternalID == key {
				out = append(out, map[string]any{"id": tk.ID, "status": tk.Status, "external_id": tk.ExternalID})
			}
		}
		writeJSON(w, 200, map[string]any{"tickets": out, "count": len(out)})
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/uploads.json":
		if ct := r.Header.Get("Content-Type"); ct != "application/binary" {
			z.t.Errorf("upload Content-Type %q", ct)
		}
		tok := "upl-" + strconv.Itoa(len(z.uploads)+1)
		z.uploads[tok] = body
		writeJSON(w, 201, map[string]any{"upload": map[string]any{"token": tok,
			"attachment": map[string]any{"file_name": r.URL.Query().Get("filename")}}})
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/tickets.json":
		n := len(z.creates)
		z.creates = append(z.creates, time.Now())
		if z.beforeCreate != nil && z.beforeCreate(n, w) {
			return
		}
		if z.loseFirstAnswer && n == 0 {
			z.create(httptest.NewRecorder(), r, body)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		z.create(w, r, body)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v2/tickets/"):
		z.update(w, r, body)
	default:
		z.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
	}
}

func (z *zendeskServer) create(w http.ResponseWriter, r *http.Request, body []byte) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		z.t.Errorf("create Content-Type %q", ct)
	}
	idem := r.Header.Get("Idempotency-Key")
	if idem == "" {
		z.t.Errorf("create without Idempotency-Key")
	}
	for _, tk := range z.tickets { // Zendesk replays a create with a known key
		if tk.Idem == idem {
			writeJSON(w, 201, map[string]any{"ticket": map[string]any{"id": tk.ID}})
			return
		}
	}
	var req struct {
		Ticket struct {
			Subject    string         `json:"subject"`
			Priority   string         `json:"priority"`
			ExternalID string         `json:"external_id"`
			Comment    map[string]any `json:"comment"`
		} `json:"ticket"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		z.t.Errorf("create body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	tk := &zTicket{ID: int64(100 + len(z.tickets)), ExternalID: req.Ticket.ExternalID, Subject: req.Ticket.Subject,
		Priority: req.Ticket.Priority, Status: "new", Comments: []map[string]any{req.Ticket.Comment}, Idem: idem}
	z.tickets = append(z.tickets, tk)
	writeJSON(w, 201, map[string]any{"ticket": map[string]any{"id": tk.ID, "status": tk.Status}})
}

func (z *zendeskServer) update(w http.ResponseWriter, r *http.Request, body []byte) {
	id := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v2/tickets/"), ".json")
	var req struct {
		Ticket struct {
			Status  string         `json:"status"`
			Comment map[string]any `json:"comment"`
		} `json:"ticket"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		z.t.Errorf("update body: %v", err)
	}
	for _, tk := range z.tickets {
		if strconv.FormatInt(tk.ID, 10) == id {
			tk.Comments = append(tk.Comments, req.Ticket.Comment)
			if req.Ticket.Status != "" {
				tk.Status = req.Ticket.Status
			}
			writeJSON(w, 200, map[string]any{"ticket": map[string]any{"id": tk.ID, "status": tk.Status}})
			return
		}
	}
	w.WriteHeader(http.StatusNotFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// snapshot returns copies of the tickets and the create count.
func (z *zendeskServer) snapshot() ([]zTicket, int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	out := make([]zTicket, len(z.tickets))
	for i, tk := range z.tickets {
		out[i] = *tk
	}
	return out, len(z.creates)
}

// newDesk builds a zendesk desk for z with its token in a file.
func newDesk(t *testing.T, z *zendeskServer) *zendesk.Desk {
	t.Helper()
	tf := filepath.Join(t.TempDir(), "zendesk.token")
	if err := os.WriteFile(tf, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := zendesk.New(config.Desk{Name: "zd", Type: config.DeskZendesk, URL: z.srv.URL, Email: testEmail, TokenFile: tf}, nil, zendesk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeToken(t *testing.T) string {
	t.Helper()
	tf := filepath.Join(t.TempDir(), "zendesk.token")
	if err := os.WriteFile(tf, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return tf
}
