package rt_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeTicket is one ticket of fakeRT.
type fakeTicket struct {
	ID     int
	Body   map[string]any // the create request
	Status string
}

// fakeHit is one request fakeRT received.
type fakeHit struct {
	Method, Path, Query, Auth string
	Body                      map[string]any
}

// fakeRT implements the REST2 endpoints the desk uses, as documented:
// GET /tickets (TicketSQL), POST /ticket, POST /ticket/{id}/comment and
// GET /queue/{name}. fail, when set, may answer a request instead (status
// != 0); created says whether a failed create still made the ticket.
type fakeRT struct {
	mu      sync.Mutex
	tickets []*fakeTicket
	hits    []fakeHit
	fail    func(h fakeHit, n int) (status int, header http.Header, created bool)
	srv     *httptest.Server
}

func newFakeRT(t *testing.T) *fakeRT {
	f := &fakeRT{}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	return f
}

var (
	reSubject = regexp.MustCompile(`Subject LIKE '((?:[^'\\]|\\.)*)'`)
	reCF      = regexp.MustCompile(`CF\.\{([^}]*)\} = '((?:[^'\\]|\\.)*)'`)
	reQueue   = regexp.MustCompile(`^Queue = '([^']*)' AND Status = '__Active__' AND `)
)

func (f *fakeRT) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := fakeHit{Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, "/REST/2.0/"), Query: r.URL.Query().Get("query"), Auth: r.Header.Get("Authorization")}
	if raw, _ := io.ReadAll(r.Body); len(raw) > 0 {
		if err := json.Unmarshal(raw, &h.Body); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, `{"message":"bad JSON"}`, http.StatusBadRequest)
			return
		}
	}
	f.hits = append(f.hits, h)
	if f.fail != nil {
		if status, hdr, created := f.fail(h, len(f.hits)); status != 0 {
			if created {
				f.create(h.Body)
			}
			for k, v := range hdr {
				w.Header()[k] = v
			}
			w.WriteHeader(status)
			_, _ = io.WriteString(w, `{"message":"injected"}`)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && h.Path == "tickets":
		f.search(w, h.Query)
	case r.Method == http.MethodPost && h.Path == "ticket":
		t := f.create(h.Body)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"%d","type":"ticket","_url":"%s/REST/2.0/ticket/%d"}`, t.ID, f.srv.URL, t.ID)
	case r.Method == http.MethodPost && strings.HasPrefix(h.Path, "ticket/") && strings.HasSuffix(h.Path, "/comment"):
		id, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(h.Path, "ticket/"), "/comment"))
		if id < 1 || id > len(f.tickets) {
			http.Error(w, `{"message":"Resource does not exist"}`, http.StatusNotFound)
			return
		}
		if st, ok := h.Body["Status"].(string); ok {
			f.tickets[id-1].Status = st
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `["Comments added"]`)
	case r.Method == http.MethodGet && h.Path == "queue/General":
		_, _ = io.WriteString(w, `{"id":1,"Name":"General","_hyperlinks":[{"ref":"self","type":"queue","id":1},
			{"ref":"create","type":"ticket","_url":"`+f.srv.URL+`/REST/2.0/ticket?Queue=1"}]}`)
	case r.Method == http.MethodGet && h.Path == "queue/ReadOnly":
		_, _ = io.WriteString(w, `{"id":2,"Name":"ReadOnly","_hyperlinks":[{"ref":"self","type":"queue","id":2}]}`)
	default:
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
	}
}

func (f *fakeRT) create(body map[string]any) *fakeTicket {
	t := &fakeTicket{ID: len(f.tickets) + 1, Body: body, Status: "new"}
	f.tickets = append(f.tickets, t)
	return t
}

// search answers the desk's TicketSQL: the queue's active tickets whose
// subject contains the tag, or whose custom field equals the key.
func (f *fakeRT) search(w http.ResponseWriter, query string) {
	unq := func(s string) string { return strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(s) }
	qm := reQueue.FindStringSubmatch(query)
	type item struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Subject string `json:"Subject"`
	}
	items := []item{}
	for _, t := range f.tickets {
		if qm == nil || t.Body["Queue"] != qm[1] || t.Status == "resolved" {
			continue
		}
		subject, _ := t.Body["Subject"].(string)
		cfs, _ := t.Body["CustomFields"].(map[string]any)
		if m := reSubject.FindStringSubmatch(query); m != nil && !strings.Contains(subject, unq(m[1])) {
			continue
		}
		if m := reCF.FindStringSubmatch(query); m != nil && cfs[m[1]] != unq(m[2]) {
			continue
		}
		items = append(items, item{ID: strconv.Itoa(t.ID), Type: "ticket", Subject: subject})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"count": len(items), "total": len(items), "page": 1, "per_page": 100, "items": items})
}

// snapshot returns the hits and tickets so far.
func (f *fakeRT) snapshot() ([]fakeHit, []fakeTicket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts := make([]fakeTicket, len(f.tickets))
	for i, t := range f.tickets {
		ts[i] = *t
	}
	return append([]fakeHit(nil), f.hits...), ts
}

// count counts the hits of method on path.
func count(hits []fakeHit, method, path string) int {
	n := 0
	for _, h := range hits {
		if h.Method == method && h.Path == path {
			n++
		}
	}
	return n
}
