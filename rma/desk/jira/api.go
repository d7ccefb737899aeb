package jira

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/deskhttp"
)

// do sends one request (path relative to the site, query and a JSON body
// or nil) and decodes a 2xx answer into out (nil: ignored).
func (d *Desk) do(ctx context.Context, method, path string, query url.Values, body, out any) (bool, error) {
	var raw []byte
	h := http.Header{}
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: %s %s: %w", d.name, method, path, err)}
		}
		h.Set("Content-Type", "application/json")
	}
	return d.send(ctx, method, path, query, h, raw, out)
}

// send is do with a prepared body and headers.
func (d *Desk) send(ctx context.Context, method, path string, query url.Values, h http.Header, raw []byte, out any) (bool, error) {
	u := *d.base
	u.Path += path
	u.RawQuery = query.Encode()
	h.Set("Accept", "application/json")
	h.Set("User-Agent", d.userAgent)
	h.Set("Authorization", d.authz)
	resp, retryable, err := d.client.Do(ctx, deskhttp.Request{Method: method, URL: &u, Header: h, Body: raw})
	if err != nil {
		return retryable, d.explain(err)
	}
	if out == nil {
		return false, nil
	}
	if resp.BodyErr != nil {
		return false, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: %s %s: %w", d.name, method, path, resp.BodyErr)}
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return false, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: %s %s: the answer is not the documented JSON: %w", d.name, method, path, err)}
	}
	return false, nil
}

// explain adds to a failed request what it means at Jira: auth,
// permission, the project or service desk, or the network, and the fix.
func (d *Desk) explain(err error) error {
	var e *desk.Error
	if !errors.As(err, &e) {
		return err
	}
	hint := ""
	switch {
	case e.Status == http.StatusUnauthorized:
		hint = "auth failed: check token_file (and email for Jira Cloud)"
	case e.Status == http.StatusForbidden:
		hint = "permission denied: the user may not do this in the project or service desk"
	case e.Status == http.StatusNotFound:
		hint = "not found: check url, project, service_desk_id and request_type_id, and that the user may see them"
	case e.Status == http.StatusBadRequest:
		hint = "Jira refused the request: check project, issue_type, the priority names (priorities) and that the create screen or request type has labels and priority"
	case e.Status == 0 && (e.Reason == desk.ReasonConnection || e.Reason == desk.ReasonTimeout):
		hint = "network: Jira could not be reached"
	}
	if hint == "" {
		return fmt.Errorf("desk %q: %w", d.name, err)
	}
	return fmt.Errorf("desk %q: %s: %w", d.name, hint, err)
}

// issue is an issue found by the search.
type issue struct {
	ID     string `json:"id"`
	Key    string `json:"key"`
	Fields struct {
		Attachment []struct {
			Filename string `json:"filename"`
		} `json:"attachment"`
	} `json:"fields"`
}

// hasAttachment reports whether the issue has a file named name.
func (is issue) hasAttachment(name string) bool {
	return slices.ContainsFunc(is.Fields.Attachment, func(a struct {
		Filename string `json:"filename"`
	}) bool {
		return a.Filename == name
	})
}

// jqlQuote quotes s as a JQL string.
func jqlQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// searchJQL is the JQL of the open issues carrying key.
func (d *Desk) searchJQL(key string) string {
	q := "labels = " + jqlQuote(Label(key)) + " AND statusCategory != Done"
	if !d.jsm() {
		q = "project = " + jqlQuote(d.project) + " AND " + q
	}
	return q + " ORDER BY created ASC"
}

// search returns the open issue carrying key (the lowest issue ID of
// several); ok is false when there is none.
func (d *Desk) search(ctx context.Context, key string) (found issue, ok, retryable bool, err error) {
	path := "/rest/api/2/search"
	if d.api == "3" {
		path = "/rest/api/3/search/jql"
	}
	q := url.Values{"jql": {d.searchJQL(key)}, "fields": {"attachment"}, "maxResults": {"50"}}
	var ans struct {
		Issues []issue `json:"issues"`
	}
	if retryable, err := d.do(ctx, http.MethodGet, path, q, nil, &ans); err != nil {
		return issue{}, false, retryable, err
	}
	if len(ans.Issues) == 0 {
		return issue{}, false, false, nil
	}
	best := ans.Issues[0]
	for _, is := range ans.Issues[1:] {
		if idLess(is.ID, best.ID) {
			best = is
		}
	}
	if len(ans.Issues) > 1 {
		d.log.Warn("several open Jira issues carry the case's label; the lowest ID is the case's",
			"label", Label(key), "issue", best.Key, "count", len(ans.Issues))
	}
	return best, true, false, nil
}

// idLess orders numeric issue IDs numerically.
func idLess(a, b string) bool {
	x, errA := strconv.ParseInt(a, 10, 64)
	y, errB := strconv.ParseInt(b, 10, 64)
	if errA != nil || errB != nil {
		return a < b
	}
	return x < y
}

// create files the issue (or request) of t and returns its key.
func (d *Desk) create(ctx context.Context, t desk.Ticket) (string, bool, error) {
	if d.jsm() {
		fields := map[string]any{"summary": summary(t), "description": plainDescription(t), "labels": []string{Label(t.Case.DedupKey)}}
		if p := Priority(t.Case.Severity, d.priorities); p != "" {
			fields["priority"] = map[string]string{"name": p}
		}
		body := map[string]any{"serviceDeskId": d.serviceDeskID, "requestTypeId": d.requestTypeID, "requestFieldValues": fields}
		var ans struct {
			IssueKey string `json:"issueKey"`
		}
		retryable, err := d.do(ctx, http.MethodPost, "/rest/servicedeskapi/request", nil, body, &ans)
		return ans.IssueKey, retryable, err
	}
	fields := map[string]any{
		"project":   map[string]string{"key": d.project},
		"issuetype": map[string]string{"name": d.issueType},
		"summary":   summary(t),
		"labels":    []string{Label(t.Case.DedupKey)},
	}
	if d.api == "3" {
		fields["description"] = adfDescription(t)
	} else {
		fields["description"] = plainDescription(t)
	}
	if p := Priority(t.Case.Severity, d.priorities); p != "" {
		fields["priority"] = map[string]string{"name": p}
	}
	var ans struct {
		Key string `json:"key"`
	}
	retryable, err := d.do(ctx, http.MethodPost, "/rest/api/"+d.api+"/issue", nil, map[string]any{"fields": fields}, &ans)
	if err == nil && ans.Key == "" {
		return "", false, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: Jira created the issue but its answer names no key", d.name)}
	}
	return ans.Key, retryable, err
}

// comment adds the event t (and note, if any) to the issue.
func (d *Desk) comment(ctx context.Context, key string, t desk.Ticket, note string) (bool, error) {
	switch {
	case d.jsm():
		body := map[string]any{"body": plainComment(t, note), "public": true}
		return d.do(ctx, http.MethodPost, "/rest/servicedeskapi/request/"+url.PathEscape(key)+"/comment", nil, body, nil)
	case d.api == "3":
		return d.do(ctx, http.MethodPost, "/rest/api/3/issue/"+url.PathEscape(key)+"/comment", nil, map[string]any{"body": adfComment(t, note)}, nil)
	default:
		return d.do(ctx, http.MethodPost, "/rest/api/2/issue/"+url.PathEscape(key)+"/comment", nil, map[string]any{"body": plainComment(t, note)}, nil)
	}
}

// attachMissing attaches t's bundle to the issue unless it has a file of
// that name already, or t carries no bundle content.
func (d *Desk) attachMissing(ctx context.Context, is issue, t desk.Ticket) (bool, error) {
	name, content, ok, err := t.BundleContent()
	if err != nil {
		return false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: %w", d.name, err)}
	}
	if !ok || is.hasAttachment(name) {
		return false, nil
	}
	raw, ctype, err := multipartFile(name, content)
	if err != nil {
		return false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: %w", d.name, err)}
	}
	h := http.Header{"Content-Type": {ctype}, "X-Atlassian-Token": {"no-check"}}
	if !d.jsm() {
		return d.send(ctx, http.MethodPost, "/rest/api/"+d.api+"/issue/"+url.PathEscape(is.Key)+"/attachments", nil, h, raw, nil)
	}
	var tmp struct {
		TemporaryAttachments []struct {
			ID string `json:"temporaryAttachmentId"`
		} `json:"temporaryAttachments"`
	}
	h.Set("X-ExperimentalApi", "opt-in")
	path := "/rest/servicedeskapi/servicedesk/" + url.PathEscape(d.serviceDeskID) + "/attachTemporaryFile"
	if retryable, err := d.send(ctx, http.MethodPost, path, nil, h, raw, &tmp); err != nil {
		return retryable, err
	}
	if len(tmp.TemporaryAttachments) == 0 {
		return false, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: attachTemporaryFile answered no temporary attachment", d.name)}
	}
	body := map[string]any{"temporaryAttachmentIds": []string{tmp.TemporaryAttachments[0].ID}, "public": true}
	return d.do(ctx, http.MethodPost, "/rest/servicedeskapi/request/"+url.PathEscape(is.Key)+"/attachment", nil, body, nil)
}

// multipartFile is a multipart/form-data body with content as part "file".
func multipartFile(name string, content []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", name)
	if err == nil {
		_, err = fw.Write(content)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("build the attachment %s: %w", name, err)
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// transition is one of an issue's available transitions.
type transition struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	To   struct {
		StatusCategory struct {
			Key string `json:"key"`
		} `json:"statusCategory"`
	} `json:"to"`
}

// doneTransition returns the issue's first transition to a Done status
// category, nil when the workflow offers none from where it stands.
func (d *Desk) doneTransition(ctx context.Context, key string) (*transition, bool, error) {
	var ans struct {
		Transitions []transition `json:"transitions"`
	}
	if retryable, err := d.do(ctx, http.MethodGet, "/rest/api/"+d.api+"/issue/"+url.PathEscape(key)+"/transitions", nil, nil, &ans); err != nil {
		return nil, retryable, err
	}
	for i, tr := range ans.Transitions {
		if tr.To.StatusCategory.Key == "done" {
			return &ans.Transitions[i], false, nil
		}
	}
	return nil, false, nil
}

// transition moves the issue along transition id.
func (d *Desk) transition(ctx context.Context, key, id string) (bool, error) {
	body := map[string]any{"transition": map[string]string{"id": id}}
	return d.do(ctx, http.MethodPost, "/rest/api/"+d.api+"/issue/"+url.PathEscape(key)+"/transitions", nil, body, nil)
}

// test reads who the token belongs to and the project (or service desk
// and request type): a round trip that proves the credentials and the
// rights, and creates nothing.
func (d *Desk) test(ctx context.Context) (string, bool, error) {
	var me struct {
		DisplayName  string `json:"displayName"`
		EmailAddress string `json:"emailAddress"`
		Name         string `json:"name"`
	}
	if retryable, err := d.do(ctx, http.MethodGet, "/rest/api/"+d.api+"/myself", nil, nil, &me); err != nil {
		return "", retryable, fmt.Errorf("desk test (GET /rest/api/%s/myself): %w", d.api, err)
	}
	who := strings.TrimSpace(me.DisplayName + " " + me.EmailAddress)
	if who == "" {
		who = me.Name
	}
	if d.jsm() {
		sd := "/rest/servicedeskapi/servicedesk/" + url.PathEscape(d.serviceDeskID)
		for _, p := range []string{sd, sd + "/requesttype/" + url.PathEscape(d.requestTypeID)} {
			if retryable, err := d.do(ctx, http.MethodGet, p, nil, nil, nil); err != nil {
				return "", retryable, fmt.Errorf("desk test (GET %s): %w", p, err)
			}
		}
		return fmt.Sprintf("none (test only: signed in as %s; service desk %s and request type %s readable; nothing created)", who, d.serviceDeskID, d.requestTypeID), false, nil
	}
	p := "/rest/api/" + d.api + "/project/" + url.PathEscape(d.project)
	if retryable, err := d.do(ctx, http.MethodGet, p, nil, nil, nil); err != nil {
		return "", retryable, fmt.Errorf("desk test (GET %s): %w", p, err)
	}
	return fmt.Sprintf("none (test only: signed in as %s; project %s readable; nothing created)", who, d.project), false, nil
}
