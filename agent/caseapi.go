package agent

// The case API (issue 10 section 2): a desk automation pushes vendor
// progress with POST /api/v1/cases/{id}/events, authenticated by the
// bearer token of api.token_file (or the systemd credential api.token);
// GET /api/v1/cases/{id} returns the case with its events and due dates.
// Events go through the engine's one path (rma.Engine.Step), like the CLI's.

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
)

// CredentialAPIToken is the systemd credential of the case API's bearer
// token (LoadCredential=api.token:PATH); api.token_file is the fallback.
const CredentialAPIToken = "api.token"

// maxEventBody bounds the body of POST /api/v1/cases/{id}/events.
const maxEventBody = 64 << 10

// CaseEventRequest is the body of POST /api/v1/cases/{id}/events. Event
// is required; at is RFC 3339 (default: now).
type CaseEventRequest struct {
	Event    string `json:"event"`
	RMA      string `json:"rma,omitempty"`
	Tracking string `json:"tracking,omitempty"`
	At       string `json:"at,omitempty"`
	Note     string `json:"note,omitempty"`
	Attest   string `json:"attest,omitempty"`
}

// CaseView is GET /api/v1/cases/{id} (and the answer of a POST): the case,
// its due dates (Case.Due, "due") and its log.
type CaseView struct {
	rma.Case
	Events []rma.Event `json:"events"`
}

// apiError is every refusal of the case API: one JSON shape.
type apiError struct {
	Error   string   `json:"error"`
	Allowed []string `json:"allowed,omitempty"` // for an illegal event: what the case's state takes
}

// errAPIOff: no token is configured, so the case events endpoint is off.
var errAPIOff = errors.New("the case API is off: no token is configured (set api.token_file, or the systemd credential " + CredentialAPIToken + ")")

// apiToken reads the case API's token: the systemd credential first, then
// api.token_file. errAPIOff when neither is configured.
func apiToken(cfg *config.Config) (config.Secret, error) {
	path, _ := config.CredentialPath(CredentialAPIToken, cfg.API.TokenFile)
	if path == "" {
		return "", errAPIOff
	}
	tok, _, err := config.ReadCredential(CredentialAPIToken, cfg.API.TokenFile)
	if err != nil {
		return "", fmt.Errorf("case API token (api.token_file: %s in %s): %w", cfg.API.TokenFile, cfg.File, err)
	}
	if strings.TrimSpace(tok.Reveal()) == "" {
		return "", fmt.Errorf("case API token (api.token_file: %s in %s) is empty: write a long random token to it", cfg.API.TokenFile, cfg.File)
	}
	return tok, nil
}

// authorize checks the request's bearer token in constant time. It
// writes the refusal (404 when the API is off, 401, 503 when the token
// cannot be read) and returns false, or returns true.
func (a *Agent) authorize(w http.ResponseWriter, r *http.Request) bool {
	tok, err := apiToken(a.config())
	switch {
	case errors.Is(err, errAPIOff):
		writeJSON(w, http.StatusNotFound, apiError{Error: err.Error()})
		return false
	case err != nil:
		a.logger.Error("case API refused: its token cannot be read", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "the case API token cannot be read by the agent; see its log"})
		return false
	}
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	want := strings.TrimSpace(tok.Reveal())
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(given)), []byte(want)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hsm-agent"`)
		writeJSON(w, http.StatusUnauthorized, apiError{Error: "missing or wrong bearer token: send Authorization: Bearer <the token of api.token_file>"})
		return false
	}
	return true
}

// caseEventHandler serves POST /api/v1/cases/{id}/events. A refused call
// changes nothing: 404 (API off, unknown case), 401, 400 (bad body,
// missing field), 409 (illegal event, closed case).
func (a *Agent) caseEventHandler(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	in, at, err := decodeCaseEvent(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
		return
	}
	id := r.PathValue("id")
	if _, err := a.engine.Step(r.Context(), id, in, rma.Action{Actor: rma.ActorAPI, At: at}); err != nil {
		a.writeStepError(w, id, in.Event, err)
		return
	}
	a.writeCase(r.Context(), w, id)
}

// decodeCaseEvent reads the request body strictly: JSON of
// CaseEventRequest, no unknown fields, an event, an RFC 3339 at.
func decodeCaseEvent(body io.Reader) (rma.EventInput, time.Time, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxEventBody+1))
	if err != nil {
		return rma.EventInput{}, time.Time{}, fmt.Errorf("read the body: %w", err)
	}
	if len(b) > maxEventBody {
		return rma.EventInput{}, time.Time{}, fmt.Errorf("the body is larger than %d bytes", maxEventBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var req CaseEventRequest
	if err := dec.Decode(&req); err != nil {
		return rma.EventInput{}, time.Time{}, fmt.Errorf("the body is not a case event (JSON {\"event\", \"rma\", \"tracking\", \"at\", \"note\", \"attest\"}): %w", err)
	}
	if strings.TrimSpace(req.Event) == "" {
		return rma.EventInput{}, time.Time{}, fmt.Errorf("field \"event\" is missing: one of %s", strings.Join(rma.Steps(), ", "))
	}
	var at time.Time
	if req.At != "" {
		if at, err = time.Parse(time.RFC3339, req.At); err != nil {
			return rma.EventInput{}, time.Time{}, fmt.Errorf("field \"at\" %q is not an RFC 3339 time (e.g. 2026-03-02T14:05:00Z)", req.At)
		}
	}
	return rma.EventInput{Event: req.Event, RMA: req.RMA, Tracking: req.Tracking, Attest: req.Attest, Note: req.Note}, at, nil
}

// writeStepError answers a refused event by its kind.
func (a *Agent) writeStepError(w http.ResponseWriter, id, event string, err error) {
	var te *rma.TransitionError
	switch {
	case errors.Is(err, rma.ErrNotFound):
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no case with ID %q", id)})
	case errors.As(err, &te):
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error(), Allowed: nonNil(te.Allowed)})
	case errors.Is(err, rma.ErrIllegalEvent), errors.Is(err, rma.ErrTerminal):
		writeJSON(w, http.StatusConflict, apiError{Error: err.Error()})
	case errors.Is(err, rma.ErrMissingField):
		writeJSON(w, http.StatusBadRequest, apiError{Error: err.Error()})
	default:
		a.logger.Error("case API: the event could not be recorded", "case", id, "event", event, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{Error: "the event could not be recorded; see the agent's log"})
	}
}

// caseHandler serves GET /api/v1/cases/{id}.
func (a *Agent) caseHandler(w http.ResponseWriter, r *http.Request) {
	a.writeCase(r.Context(), w, r.PathValue("id"))
}

func (a *Agent) writeCase(ctx context.Context, w http.ResponseWriter, id string) {
	c, err := a.store.Case(ctx, id)
	if errors.Is(err, rma.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{Error: fmt.Sprintf("no case with ID %q", id)})
		return
	}
	var events []rma.Event
	if err == nil {
		events, err = a.store.Events(ctx, id)
	}
	if err != nil {
		a.logger.Error("case API: read the case", "case", id, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{Error: "the case could not be read; see the agent's log"})
		return
	}
	writeJSON(w, http.StatusOK, CaseView{Case: c, Events: nonNil(events)})
}
