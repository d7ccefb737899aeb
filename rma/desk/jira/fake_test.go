package jira_test

import (
	"encoding/base64"
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

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// fakeJira implements the documented endpoints the desk uses, of one
// variant, and fails the test on any request that breaks the contract:
// method, path, Authorization, Accept, Content-Type, X-Atlassian-Token and
// the body fields. Issues live in memory.
type fakeJira struct {
	t       *testing.T
	srv     *httptest.Server
	variant string
	api     string
	auth    string // the Authorization every request must carry

	mu        sync.Mutex
	issues    []*fakeIssue
	temp      map[string]string // temporary attachment ID -> file name
	creates   int               // create requests answered 2xx
	createHit int               // create requests received
	requests  []string
	// onCreate, when set, is asked before each create (n counts from 0):
	// status 0 creates normally; created also creates the issue before
	// answering status (the answer is lost).
	onCreate func(n int, w http.ResponseWriter) (status int, created bool)
	noDone   bool // the workflow has no transition to Done
}

type fakeIssue struct {
	ID          int
	Key         string
	Label       string
	Priority    string
	Summary     string
	Description any
	Comments    []any
	Attachments []string
	Done        bool
}

func newFakeJira(t *testing.T, variant, auth string) *fakeJira {
	f := &fakeJira{t: t, variant: variant, api: "2", auth: auth, temp: map[string]string{}}
	if variant == config.JiraCloud || (variant == config.JiraServiceManagement && strings.HasPrefix(auth, "Basic ")) {
		f.api = "3"
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeJira) fail(w http.ResponseWriter, status int, format string, args ...any) {
	f.t.Errorf(format, args...)
	http.Error(w, fmt.Sprintf(format, args...), status)
}

func (f *fakeJira) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	if got := r.Header.Get("Authorization"); got != f.auth {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errorMessages":["You are not authenticated"]}`)
		return
	}
	if r.Header.Get("Accept") != "application/json" || !strings.HasPrefix(r.Header.Get("User-Agent"), "hsm-agent/") {
		f.fail(w, http.StatusBadRequest, "%s %s: Accept %q User-Agent %q", r.Method, r.URL.Path, r.Header.Get("Accept"), r.Header.Get("User-Agent"))
		return
	}
	p, v := r.URL.Path, "/rest/api/"+f.api
	switch {
	case r.Method == http.MethodGet && p == v+"/myself":
		writeJSON(w, 200, map[string]string{"displayName": "HSM Agent", "emailAddress": "hsm@example.com"})
	case r.Method == http.MethodGet && p == v+"/project/OPS" && f.variant != config.JiraServiceManagement:
		writeJSON(w, 200, map[string]string{"key": "OPS", "id": "10000"})
	case r.Method == http.MethodGet && (p == "/rest/servicedeskapi/servicedesk/4" || p == "/rest/servicedeskapi/servicedesk/4/requesttype/25") && f.variant == config.JiraServiceManagement:
		writeJSON(w, 200, map[string]string{"id": "4"})
	case r.Method == http.MethodGet && p == f.searchPath():
		f.search(w, r)
	case r.Method == http.MethodPost && p == v+"/issue" && f.variant != config.JiraServiceManagement:
		f.create(w, r)
	case r.Method == http.MethodPost && p == "/rest/servicedeskapi/request" && f.variant == config.JiraServiceManagement:
		f.create(w, r)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/comment"):
		f.comment(w, r)
	case r.Method == http.MethodPost && (strings.HasSuffix(p, "/attachments") || strings.HasSuffix(p, "/attachTemporaryFile")):
		f.upload(w, r)
	case r.Method == http.MethodPost && strings.HasPrefix(p, "/rest/servicedeskapi/request/") && strings.HasSuffix(p, "/attachment"):
		f.attachTemporary(w, r)
	case strings.HasPrefix(p, v+"/issue/") && strings.HasSuffix(p, "/transitions"):
		f.transitions(w, r)
	default:
		f.fail(w, http.StatusNotFound, "unexpected %s %s for variant %s", r.Method, p, f.variant)
	}
}

func (f *fakeJira) searchPath() string {
	if f.api == "3" {
		return "/rest/api/3/search/jql"
	}
	return "/rest/api/2/search"
}

var reLabel = regexp.MustCompile(`labels = "([^"]+)" AND statusCategory != Done`)

func (f *fakeJira) search(w http.ResponseWriter, r *http.Request) {
	jql := r.URL.Query().Get("jql")
	m := reLabel.FindStringSubmatch(jql)
	wantProject := f.variant != config.JiraServiceManagement
	if m == nil || strings.Contains(jql, `project = "OPS"`) != wantProject || r.URL.Query().Get("fields") != "attachment" {
		f.fail(w, http.StatusBadRequest, "search jql %q fields %q", jql, r.URL.Query().Get("fields"))
		return
	}
	var out []map[string]any
	for _, is := range f.issues {
		if is.Label == m[1] && !is.Done {
			var att []map[string]string
			for _, a := range is.Attachments {
				att = append(att, map[string]string{"filename": a})
			}
			out = append(out, map[string]any{"id": strconv.Itoa(is.ID), "key": is.Key, "fields": map[string]any{"attachment": att}})
		}
	}
	writeJSON(w, 200, map[string]any{"issues": out})
}

func (f *fakeJira) create(w http.ResponseWriter, r *http.Request) {
	n := f.createHit
	f.createHit++
	var body map[string]any
	if !f.decode(w, r, &body) {
		return
	}
	fields, _ := body["fields"].(map[string]any)
	if f.variant == config.JiraServiceManagement {
		if body["serviceDeskId"] != "4" || body["requestTypeId"] != "25" {
			f.fail(w, http.StatusBadRequest, "request %v", body)
			return
		}
		fields, _ = body["requestFieldValues"].(map[string]any)
	} else if fmt.Sprint(fields["project"]) != "map[key:OPS]" || fmt.Sprint(fields["issuetype"]) != "map[name:Incident]" {
		f.fail(w, http.StatusBadRequest, "project/issuetype %v %v", fields["project"], fields["issuetype"])
		return
	}
	labels, _ := fields["labels"].([]any)
	prio, _ := fields["priority"].(map[string]any)
	if len(labels) != 1 || fields["summary"] == nil {
		f.fail(w, http.StatusBadRequest, "fields %v", fields)
		return
	}
	if f.api == "3" && f.variant == config.JiraCloud {
		if doc, _ := fields["description"].(map[string]any); doc["type"] != "doc" || doc["version"] != float64(1) {
			f.fail(w, http.StatusBadRequest, "cloud description is not ADF: %v", fields["description"])
			return
		}
	} else if _, ok := fields["description"].(string); !ok {
		f.fail(w, http.StatusBadRequest, "description is not text: %v", fields["description"])
		return
	}
	status, created := 0, false
	if f.onCreate != nil {
		status, created = f.onCreate(n, w)
	}
	if status != 0 && !created {
		w.WriteHeader(status)
		return
	}
	is := &fakeIssue{ID: 10000 + len(f.issues), Key: fmt.Sprintf("OPS-%d", len(f.issues)+1), Label: labels[0].(string),
		Summary: fields["summary"].(string), Description: fields["description"]}
	if prio != nil {
		is.Priority, _ = prio["name"].(string)
	}
	f.issues = append(f.issues, is)
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	f.creates++
	if f.variant == config.JiraServiceManagement {
		writeJSON(w, 201, map[string]any{"issueId": strconv.Itoa(is.ID), "issueKey": is.Key})
		return
	}
	writeJSON(w, 201, map[string]any{"id": strconv.Itoa(is.ID), "key": is.Key, "self": f.srv.URL + "/rest/api/" + f.api + "/issue/" + strconv.Itoa(is.ID)})
}

// issueAt finds the issue whose key is the path segment after prefix.
func (f *fakeJira) issueAt(p, prefix string) *fakeIssue {
	key, _, _ := strings.Cut(strings.TrimPrefix(p, prefix), "/")
	for _, is := range f.issues {
		if is.Key == key {
			return is
		}
	}
	return nil
}

func (f *fakeJira) comment(w http.ResponseWriter, r *http.Request) {
	prefix := "/rest/api/" + f.api + "/issue/"
	if f.variant == config.JiraServiceManagement {
		prefix = "/rest/servicedeskapi/request/"
	}
	is := f.issueAt(r.URL.Path, prefix)
	var body map[string]any
	if is == nil || !strings.HasPrefix(r.URL.Path, prefix) || !f.decode(w, r, &body) {
		f.fail(w, http.StatusNotFound, "comment on %s", r.URL.Path)
		return
	}
	switch {
	case f.variant == config.JiraCloud:
		if doc, _ := body["body"].(map[string]any); doc["type"] != "doc" {
			f.fail(w, http.StatusBadRequest, "cloud comment is not ADF: %v", body)
			return
		}
	case f.variant == config.JiraServiceManagement && body["public"] != true:
		f.fail(w, http.StatusBadRequest, "JSM comment not public: %v", body)
		return
	default:
		if _, ok := body["body"].(string); !ok {
			f.fail(w, http.StatusBadRequest, "comment is not text: %v", body)
			return
		}
	}
	is.Comments = append(is.Comments, body["body"])
	writeJSON(w, 201, map[string]string{"id": strconv.Itoa(len(is.Comments))})
}

// upload takes a multipart "file": an issue attachment or a JSM
// temporary file.
func (f *fakeJira) upload(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Atlassian-Token") != "no-check" {
		f.fail(w, http.StatusForbidden, "%s without X-Atlassian-Token: no-check (XSRF check failed)", r.URL.Path)
		return
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		f.fail(w, http.StatusBadRequest, "multipart part \"file\": %v", err)
		return
	}
	content, _ := io.ReadAll(file)
	name := hdr.Filename + ":" + string(content)
	if strings.HasSuffix(r.URL.Path, "/attachTemporaryFile") {
		if f.variant != config.JiraServiceManagement || r.URL.Path != "/rest/servicedeskapi/servicedesk/4/attachTemporaryFile" {
			f.fail(w, http.StatusNotFound, "temporary file at %s", r.URL.Path)
			return
		}
		id := fmt.Sprintf("temp-%d", len(f.temp)+1)
		f.temp[id] = name
		writeJSON(w, 201, map[string]any{"temporaryAttachments": []map[string]string{{"temporaryAttachmentId": id, "fileName": hdr.Filename}}})
		return
	}
	is := f.issueAt(r.URL.Path, "/rest/api/"+f.api+"/issue/")
	if is == nil || f.variant == config.JiraServiceManagement {
		f.fail(w, http.StatusNotFound, "attachment at %s", r.URL.Path)
		return
	}
	is.Attachments = append(is.Attachments, hdr.Filename)
	f.temp["issue:"+is.Key] = name
	writeJSON(w, 200, []map[string]string{{"filename": hdr.Filename}})
}

func (f *fakeJira) attachTemporary(w http.ResponseWriter, r *http.Request) {
	is := f.issueAt(r.URL.Path, "/rest/servicedeskapi/request/")
	var body struct {
		IDs    []string `json:"temporaryAttachmentIds"`
		Public bool     `json:"public"`
	}
	if is == nil || !f.decode(w, r, &body) || len(body.IDs) != 1 || f.temp[body.IDs[0]] == "" {
		f.fail(w, http.StatusBadRequest, "attach temporary %s %+v", r.URL.Path, body)
		return
	}
	name, content, _ := strings.Cut(f.temp[body.IDs[0]], ":")
	is.Attachments = append(is.Attachments, name)
	f.temp["issue:"+is.Key] = name + ":" + content
	writeJSON(w, 201, map[string]any{"attachments": map[string]any{"values": []map[string]string{{"filename": name}}}})
}

func (f *fakeJira) transitions(w http.ResponseWriter, r *http.Request) {
	is := f.issueAt(r.URL.Path, "/rest/api/"+f.api+"/issue/")
	if is == nil {
		f.fail(w, http.StatusNotFound, "transitions of %s", r.URL.Path)
		return
	}
	if r.Method == http.MethodGet {
		trs := []map[string]any{{"id": "11", "name": "Start", "to": map[string]any{"statusCategory": map[string]string{"key": "indeterminate"}}}}
		if !f.noDone {
			trs = append(trs, map[string]any{"id": "31", "name": "Resolve", "to": map[string]any{"statusCategory": map[string]string{"key": "done"}}})
		}
		writeJSON(w, 200, map[string]any{"transitions": trs})
		return
	}
	var body struct {
		Transition struct {
			ID string `json:"id"`
		} `json:"transition"`
	}
	if !f.decode(w, r, &body) || body.Transition.ID != "31" || f.noDone {
		f.fail(w, http.StatusBadRequest, "transition %+v", body)
		return
	}
	is.Done = true
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeJira) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Header.Get("Content-Type") != "application/json" {
		f.fail(w, http.StatusUnsupportedMediaType, "%s %s: Content-Type %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		return false
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		f.fail(w, http.StatusBadRequest, "%s %s: %v", r.Method, r.URL.Path, err)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// snapshot returns a copy of the issues and the create count.
func (f *fakeJira) snapshot() ([]fakeIssue, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]fakeIssue, len(f.issues))
	for i, is := range f.issues {
		out[i] = *is
	}
	return out, f.creates
}

// attached returns "name:content" of the issue's attachment.
func (f *fakeJira) attached(key string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.temp["issue:"+key]
}

// basic is the Authorization of Jira Cloud's email + API token.
func basic(email, token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(email+":"+token))
}
