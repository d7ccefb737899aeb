package rt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/deskhttp"
)

// do sends one REST2 request (path relative to /REST/2.0/) and returns the
// 2xx answer's body; errors are the deskhttp ones with what the status
// means in RT added.
func (d *Desk) do(ctx context.Context, method, path string, query url.Values, body any) ([]byte, bool, error) {
	u := d.base.JoinPath(path)
	u.RawQuery = query.Encode()
	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set("User-Agent", d.userAgent)
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, false, &desk.Error{Reason: desk.ReasonInvalid, Err: fmt.Errorf("desk %q: %w", d.name, err)}
		}
		h.Set("Content-Type", "application/json")
	}
	d.auth(h)
	resp, retryable, err := d.client.Do(ctx, deskhttp.Request{Method: method, URL: u, Header: h, Body: raw})
	if err != nil {
		return nil, retryable, d.explain(err)
	}
	if resp.BodyErr != nil {
		return nil, true, &desk.Error{Reason: desk.ReasonBadResponse, Status: resp.Status, Err: fmt.Errorf("desk %q: %w", d.name, resp.BodyErr)}
	}
	return resp.Body, false, nil
}

// explain adds to a failed request what it means at RT: which of auth,
// permission, queue or network failed, and the fix.
func (d *Desk) explain(err error) error {
	var e *desk.Error
	if !errors.As(err, &e) {
		return err
	}
	hint := ""
	switch {
	case e.Status == http.StatusUnauthorized:
		hint = "auth: RT refused the credentials; check token_file (an RT auth token) or username and password_file"
	case e.Status == http.StatusForbidden:
		hint = fmt.Sprintf("permission: the RT user may not do this in queue %q; grant it SeeQueue, ShowTicket, CreateTicket, CommentOnTicket and ModifyTicket there", d.queue)
	case e.Status == 0:
		hint = "network: RT did not answer; check url and that RT is reachable"
	default:
		return fmt.Errorf("desk %q: %w", d.name, err)
	}
	return fmt.Errorf("desk %q: %s: %w", d.name, hint, err)
}

// post sends body as JSON to path and returns the answer.
func (d *Desk) post(ctx context.Context, path string, body any) ([]byte, bool, error) {
	return d.do(ctx, http.MethodPost, path, nil, body)
}

// tsqlQuote quotes s as a TicketSQL string.
func tsqlQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// tag is the subject tag that carries a dedup key without dedup_field.
func tag(key string) string { return "[hsm:" + key + "]" }

// searchQuery is the TicketSQL of the queue's active tickets with key.
func (d *Desk) searchQuery(key string) string {
	q := "Queue = " + tsqlQuote(d.queue) + " AND Status = '__Active__' AND "
	if d.dedupField != "" {
		return q + "CF.{" + d.dedupField + "} = " + tsqlQuote(key)
	}
	return q + "Subject LIKE " + tsqlQuote(tag(key))
}

// searchAnswer is a REST2 collection of tickets.
type searchAnswer struct {
	Items []struct {
		ID      json.Number `json:"id"`
		Subject string      `json:"Subject"`
	} `json:"items"`
}

// search returns the IDs of the queue's active tickets carrying key,
// lowest first.
func (d *Desk) search(ctx context.Context, key string) ([]string, bool, error) {
	q := url.Values{"query": {d.searchQuery(key)}, "fields": {"Subject"},
		"orderby": {"id"}, "order": {"ASC"}, "per_page": {"100"}}
	raw, retryable, err := d.do(ctx, http.MethodGet, "tickets", q, nil)
	if err != nil {
		return nil, retryable, err
	}
	var a searchAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, true, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: ticket search answer is not a REST2 collection: %w", d.name, err)}
	}
	var ids []int
	for _, it := range a.Items {
		// LIKE is a substring match with wildcards: keep exact tags only.
		if d.dedupField == "" && !strings.Contains(it.Subject, tag(key)) {
			continue
		}
		n, err := strconv.Atoi(it.ID.String())
		if err != nil {
			return nil, false, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: ticket id %q in the search answer is not a number", d.name, it.ID)}
		}
		ids = append(ids, n)
	}
	sort.Ints(ids)
	out := make([]string, len(ids))
	for i, n := range ids {
		out[i] = strconv.Itoa(n)
	}
	return out, false, nil
}

// create files the ticket of ev and returns its ID.
func (d *Desk) create(ctx context.Context, ev event) (string, bool, error) {
	body := map[string]any{
		"Queue":       d.queue,
		"Subject":     subject(ev),
		"Priority":    Priority(ev.Case.Severity),
		"Content":     ticketText(ev),
		"ContentType": "text/plain",
	}
	if d.dedupField != "" {
		body["CustomFields"] = map[string]string{d.dedupField: ev.Case.DedupKey}
	}
	if a := attachments(ev); a != nil {
		body["Attachments"] = a
	}
	raw, retryable, err := d.post(ctx, "ticket", body)
	if err != nil {
		return "", retryable, err
	}
	var a struct {
		ID json.Number `json:"id"`
	}
	if err := json.Unmarshal(raw, &a); err != nil || a.ID == "" {
		// RT has the ticket; the retry's search finds it.
		return "", true, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: ticket created but RT's answer has no id", d.name)}
	}
	d.log.Info("RT ticket created", "case", ev.Case.ID, "ticket", a.ID.String(), "priority", Priority(ev.Case.Severity))
	return a.ID.String(), false, nil
}

// comment adds ev to ticket id as a comment, with the bundle on the events
// that release it, resolving the ticket when the case ends.
func (d *Desk) comment(ctx context.Context, id string, ev event) (bool, error) {
	body := map[string]any{
		"Subject":     ev.Event + ": " + ev.Case.Summary,
		"Content":     commentText(ev),
		"ContentType": "text/plain",
	}
	if bringsBundle(ev.Event) {
		if a := attachments(ev); a != nil {
			body["Attachments"] = a
		}
	}
	if closing(ev.Event) {
		body["Status"] = "resolved"
	}
	_, retryable, err := d.post(ctx, "ticket/"+id+"/comment", body)
	return retryable, err
}

// test reads the queue and searches it: a round trip that proves the
// credentials and the rights, and creates nothing.
func (d *Desk) test(ctx context.Context) (string, bool, error) {
	raw, retryable, err := d.do(ctx, http.MethodGet, "queue/"+url.PathEscape(d.queue), nil, nil)
	if err != nil {
		var e *desk.Error
		if errors.As(err, &e) && e.Status == http.StatusNotFound {
			err = fmt.Errorf("queue: RT has no queue %q, or the user may not see it (SeeQueue); set desks[].queue: %w", d.queue, err)
		}
		return "", retryable, err
	}
	// REST2 offers the queue's "create" link only to a user with CreateTicket.
	var queue struct {
		Links []struct {
			Ref string `json:"ref"`
		} `json:"_hyperlinks"`
	}
	if err := json.Unmarshal(raw, &queue); err != nil {
		return "", false, &desk.Error{Reason: desk.ReasonBadResponse, Err: fmt.Errorf("desk %q: queue %q: the answer is not a REST2 queue: %w", d.name, d.queue, err)}
	}
	canCreate := false
	for _, l := range queue.Links {
		canCreate = canCreate || l.Ref == "create"
	}
	if !canCreate {
		return "", false, &desk.Error{Reason: desk.ReasonStatus4xx, Err: fmt.Errorf(
			"desk %q: permission: the RT user may not create tickets in queue %q; grant it CreateTicket there", d.name, d.queue)}
	}
	q := url.Values{"query": {"Queue = " + tsqlQuote(d.queue)}, "per_page": {"1"}}
	if _, retryable, err := d.do(ctx, http.MethodGet, "tickets", q, nil); err != nil {
		return "", retryable, fmt.Errorf("searching queue %q: %w", d.queue, err)
	}
	return "", false, nil
}
