package servicenow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/hsm-agent/hsm-agent/rma/desk"
	"github.com/hsm-agent/hsm-agent/rma/desk/internal/deskhttp"
)

// test proves the credentials and the read permission on incident.
func (d *Desk) test(ctx context.Context) (string, bool, error) {
	var a struct {
		Result []incident `json:"result"`
	}
	q := url.Values{"sysparm_limit": {"1"}, "sysparm_fields": {"sys_id,number"}}
	if r, err := d.send(ctx, http.MethodGet, "/api/now/table/incident", q, "", nil, &a); err != nil {
		var de *desk.Error
		if errors.As(err, &de) {
			switch de.Status {
			case http.StatusUnauthorized:
				return "", r, fmt.Errorf("auth: check username and password_file, or token_file: %w", err)
			case http.StatusForbidden:
				return "", r, fmt.Errorf("permission: the user may not read incidents (needs e.g. the itil role): %w", err)
			}
		}
		return "", r, fmt.Errorf("network or URL: %w", err)
	}
	return fmt.Sprintf("incident table readable (%d read)", len(a.Result)), false, nil
}

// sendJSON sends v as JSON.
func (d *Desk) sendJSON(ctx context.Context, method, path string, v, out any) (bool, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return false, &desk.Error{Reason: desk.ReasonInvalid, Err: err}
	}
	return d.send(ctx, method, path, nil, "application/json", b, out)
}

// send sends one request through deskhttp and decodes a 2xx answer into out.
func (d *Desk) send(ctx context.Context, method, path string, q url.Values, ctype string, body []byte, out any) (bool, error) {
	u := d.base.JoinPath(path)
	u.RawQuery = q.Encode()
	h := http.Header{}
	h.Set("Authorization", d.auth)
	h.Set("User-Agent", d.userAgent)
	h.Set("Accept", "application/json")
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	resp, retryable, err := d.client.Do(ctx, deskhttp.Request{Method: method, URL: u, Header: h, Body: body})
	if err != nil {
		return retryable, err
	}
	if out == nil {
		return false, nil
	}
	if resp.BodyErr != nil {
		return true, &desk.Error{Reason: desk.ReasonBadResponse, Status: resp.Status, Err: resp.BodyErr}
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return false, &desk.Error{Reason: desk.ReasonBadResponse, Status: resp.Status,
			Err: fmt.Errorf("%s %s: the answer is not the JSON ServiceNow documents: %w", method, deskhttp.RedactURL(u), err)}
	}
	return false, nil
}
