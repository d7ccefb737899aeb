package servicenow_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/desk/servicenow"
)

const (
	testUser     = "hsm-agent"
	testPassword = "snow-secret-pw-42"
)

// snIncident is an incident the fake ServiceNow holds.
type snIncident struct {
	SysID, Number string
	Fields        map[string]string
	WorkNotes     []string
	Attachments   map[string][]byte
}

// snowServer is an httptest ServiceNow that implements the Table API
// (incident) and the Attachment API as the desk uses them, checking
// method, path, auth and content types.
type snowServer struct {
	t         *testing.T
	mu        sync.Mutex
	incidents []*snIncident
	creates   []time.Time
	// beforeCreate may answer a create itself (429, 500); n counts from 0.
	beforeCreate  func(n int, w http.ResponseWriter) bool
	refuseQuietly bool
	// loseFirstAnswer stores the first create's incident but answers 500.
	loseFirstAnswer bool
	srv             *httptest.Server
}

func newSnow(t *testing.T) *snowServer {
	s := &snowServer{t: t}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *snowServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))
	if got := r.Header.Get("Authorization"); got != want {
		if !s.refuseQuietly {
			s.t.Errorf("%s %s: Authorization %q, want %q", r.Method, r.URL.Path, got, want)
		}
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"message": "User Not Authenticated"}})
		return
	}
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/now/table/incident":
		s.query(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/api/now/table/incident":
		n := len(s.creates)
		s.creates = append(s.creates, time.Now())
		if s.beforeCreate != nil && s.beforeCreate(n, w) {
			return
		}
		if s.loseFirstAnswer && n == 0 {
			s.create(httptest.NewRecorder(), r, body)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		s.create(w, r, body)
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/api/now/table/incident/"):
		s.patch(w, r, body)
	case r.Method == http.MethodPost && r.URL.Path == "/api/now/attachment/file":
		q := r.URL.Query()
		inc := s.bySysID(q.Get("table_sys_id"))
		if q.Get("table_name") != "incident" || inc == nil || q.Get("file_name") == "" {
			s.t.Errorf("attachment query %v", q)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		inc.Attachments[q.Get("file_name")] = body
		writeJSON(w, 201, map[string]any{"result": map[string]any{"sys_id": "att1", "file_name": q.Get("file_name")}})
	default:
		s.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
	}
}

// query implements the two sysparm_query forms the desk uses.
func (s *snowServer) query(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query().Get("sysparm_query")
	out := []map[string]any{}
	key, ok := strings.CutPrefix(q, "correlation_id=")
	if ok {
		key, ok = strings.CutSuffix(key, "^active=true")
		if !ok {
			s.t.Errorf("lookup %q does not ask for active incidents", q)
		}
	}
	for _, inc := range s.incidents {
		if q == "" || (inc.Fields["correlation_id"] == key && inc.Fields["state"] != "6") {
			out = append(out, map[string]any{"sys_id": inc.SysID, "number": inc.Number})
		}
	}
	writeJSON(w, 200, map[string]any{"result": out})
}

func (s *snowServer) create(w http.ResponseWriter, r *http.Request, body []byte) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		s.t.Errorf("create Content-Type %q", ct)
	}
	f := map[string]string{}
	if err := json.Unmarshal(body, &f); err != nil {
		s.t.Errorf("create body: %v", err)
	}
	if _, ok := f["priority"]; ok {
		s.t.Errorf("create sets priority directly: %v", f)
	}
	inc := &snIncident{SysID: fmt.Sprintf("%032d", len(s.incidents)+1), Number: fmt.Sprintf("INC%07d", len(s.incidents)+1),
		Fields: f, Attachments: map[string][]byte{}}
	inc.Fields["state"] = "1"
	s.incidents = append(s.incidents, inc)
	writeJSON(w, 201, map[string]any{"result": map[string]any{"sys_id": inc.SysID, "number": inc.Number}})
}

func (s *snowServer) patch(w http.ResponseWriter, r *http.Request, body []byte) {
	inc := s.bySysID(strings.TrimPrefix(r.URL.Path, "/api/now/table/incident/"))
	if inc == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	f := map[string]string{}
	if err := json.Unmarshal(body, &f); err != nil {
		s.t.Errorf("patch body: %v", err)
	}
	for k, v := range f {
		if k == "work_notes" {
			inc.WorkNotes = append(inc.WorkNotes, v)
			continue
		}
		inc.Fields[k] = v
	}
	writeJSON(w, 200, map[string]any{"result": map[string]any{"sys_id": inc.SysID, "number": inc.Number}})
}

func (s *snowServer) bySysID(id string) *snIncident {
	for _, inc := range s.incidents {
		if inc.SysID == id {
			return inc
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// snapshot returns copies of the incidents and the create count.
func (s *snowServer) snapshot() ([]snIncident, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]snIncident, len(s.incidents))
	for i, inc := range s.incidents {
		out[i] = *inc
	}
	return out, len(s.creates)
}

// newDesk builds a servicenow desk for s with basic auth from a file.
func newDesk(t *testing.T, s *snowServer, user string) *servicenow.Desk {
	t.Helper()
	pf := filepath.Join(t.TempDir(), "snow.password")
	if err := os.WriteFile(pf, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := servicenow.New(config.Desk{Name: "snow", Type: config.DeskServiceNow, URL: s.srv.URL,
		Username: user, PasswordFile: pf, AssignmentGroup: "HSM Operations"}, nil, servicenow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
