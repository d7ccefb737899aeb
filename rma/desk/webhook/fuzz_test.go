package webhook_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/hsm-agent/hsm-agent/rma/desk/webhook"
)

// FuzzTicketID parses arbitrary 2xx answers. Properties: no panic; the ID
// is at most 200 characters, printable, trimmed and valid UTF-8 (it goes
// into logs, the case and the desk reference); TicketID is ParseTicketID
// without its error, and an error always comes with no ID; an answer of the
// form {"ticket_id": "<id>"} with a short plain id gives that id back.
func FuzzTicketID(f *testing.F) {
	for _, s := range []string{`{"ticket_id":"INC0012"}`, `{"ticket_id": 4711}`, `{"ticket_id":"  T-9\n"}`, `{"id":"x"}`,
		`accepted`, ``, `{"ticket_id":null}`, `{"ticket_id":{"nested":"no"}}`, `[{"ticket_id":"x"}]`, `{"ticket_id": "T-1`,
		`{"ticket_id":"\u0000\u202e` + strings.Repeat("x", 300) + `"}`, `{"ticket_id":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := webhook.ParseTicketID(body)
		if got := webhook.TicketID(body); got != id {
			t.Fatalf("TicketID %q != ParseTicketID %q", got, id)
		}
		if err != nil && id != "" {
			t.Fatalf("an error (%v) with the ID %q", err, id)
		}
		if utf8.RuneCountInString(id) > 200 || !utf8.ValidString(id) || strings.TrimSpace(id) != id {
			t.Fatalf("ID %q: too long, invalid UTF-8 or untrimmed", id)
		}
		for _, r := range id {
			if !unicode.IsPrint(r) {
				t.Fatalf("ID %q holds the unprintable %U", id, r)
			}
		}
		// Round trip: a short printable ID sent as a JSON string comes back.
		want := string(body)
		if len(want) == 0 || len(want) > 200 || !utf8.ValidString(want) || strings.TrimSpace(want) != want ||
			strings.IndexFunc(want, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			return
		}
		answer, _ := json.Marshal(map[string]string{"ticket_id": want})
		if got, err := webhook.ParseTicketID(answer); err != nil || got != want {
			t.Fatalf("ParseTicketID(%s) = %q, %v; want %q", answer, got, err, want)
		}
	})
}
