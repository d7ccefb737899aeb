package desk

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hsm-agent/hsm-agent/rma"
)

// ErrBundleMissing is returned, together with a usable body, by BuildBody
// when the row's bundle file no longer exists (pruned by retention or
// removed by hand): the event still goes out, without the bundle's content,
// because the case matters more than its attachment.
var ErrBundleMissing = errors.New("bundle file is missing")

// BuildBody returns the JSON a desk receives for outbox row d, sent at now:
// the row's payload (a DeskEvent) with sent_at set and, when the row names a
// bundle file, bundle {name, sha256, size} computed from the file plus
// content_base64, or withheld: true instead of the content while the
// desk's upload policy holds the bundle back. A bundle that cannot be read
// is an *Error with ReasonBundle (retryable: it may be a permission to
// fix); a missing one gives the body without bundle content and an error
// wrapping ErrBundleMissing.
func BuildBody(d rma.Delivery, now time.Time) ([]byte, error) {
	return buildBody(d, now, nil)
}

// Scrub removes secrets from a ticket's free text; the agent passes the
// bundles' scrubber (bundle.Scrubber.Scrub) so one set of rules decides
// what leaves the host.
type Scrub func(string) string

// buildBody is BuildBody with the case's free text passed through scrub
// (nil: unchanged).
func buildBody(d rma.Delivery, now time.Time, scrub Scrub) ([]byte, error) {
	var ev rma.DeskEvent
	dec := json.NewDecoder(bytes.NewReader(d.Payload))
	if err := dec.Decode(&ev); err != nil {
		return nil, &Error{Reason: ReasonInvalid, Err: fmt.Errorf("outbox row %d (%s): payload is not a desk event: %w", d.ID, d.IdempotencyKey, err)}
	}
	ev.SentAt = now.UTC().Format(time.RFC3339)
	scrubText(&ev, scrub)
	if ev.Case.Due == nil {
		ev.Case.Due = map[string]time.Time{} // the documented event has "due": {}
	}
	var missing error
	if d.BundlePath != "" {
		ref, err := bundleRef(d.BundlePath, !d.WithholdBundle)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = fmt.Errorf("outbox row %d (%s): %w: %s", d.ID, d.IdempotencyKey, ErrBundleMissing, d.BundlePath)
			if ev.Bundle != nil {
				ev.Bundle.ContentBase64 = ""
			}
		case err != nil:
			return nil, &Error{Reason: ReasonBundle, Err: fmt.Errorf("outbox row %d (%s): %w", d.ID, d.IdempotencyKey, err)}
		default:
			ref.Withheld = d.WithholdBundle
			ev.Bundle = &ref
		}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, &Error{Reason: ReasonInvalid, Err: fmt.Errorf("outbox row %d (%s): %w", d.ID, d.IdempotencyKey, err)}
	}
	return body, missing
}

// scrubText passes every free-text field of ev (what a fault's reason,
// a library's message or an operator's note can fill) through scrub.
func scrubText(ev *rma.DeskEvent, scrub Scrub) {
	if scrub == nil {
		return
	}
	c := &ev.Case
	for _, f := range []*string{&c.Summary, &c.Description, &c.Impact, &c.Reason} {
		*f = scrub(*f)
	}
	if ev.Page != nil {
		ev.Page.Text = scrub(ev.Page.Text)
	}
}

// NewMessage builds the Message for outbox row d sent at now (see BuildBody,
// including its ErrBundleMissing case, where the Message is usable).
func NewMessage(d rma.Delivery, now time.Time) (Message, error) {
	return NewScrubbedMessage(d, now, nil)
}

// NewScrubbedMessage is NewMessage with the case's free text passed
// through scrub (nil: unchanged); the outbox worker sends these.
func NewScrubbedMessage(d rma.Delivery, now time.Time, scrub Scrub) (Message, error) {
	body, err := buildBody(d, now, scrub)
	if body == nil {
		return Message{}, err
	}
	return Message{Delivery: d, Body: body}, err
}

// bundleRef describes the bundle file at path; with content it also holds
// the file in base64.
func bundleRef(path string, content bool) (rma.BundleRef, error) {
	f, err := os.Open(path)
	if err != nil {
		return rma.BundleRef{}, fmt.Errorf("read bundle: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	var buf bytes.Buffer
	w := io.Writer(h)
	if content {
		w = io.MultiWriter(h, &buf)
	}
	n, err := io.Copy(w, f)
	if err != nil {
		return rma.BundleRef{}, fmt.Errorf("read bundle %s: %w", path, err)
	}
	ref := rma.BundleRef{Name: filepath.Base(path), SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	if content {
		ref.ContentBase64 = base64.StdEncoding.EncodeToString(buf.Bytes())
	}
	return ref, nil
}
