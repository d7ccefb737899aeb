package rma

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// bundleRetry is the in-memory backoff of one case's owed bundle (a
// restart tries again at once).
type bundleRetry struct {
	failures int
	at       time.Time // the next try
}

// bundleNote is what desks are told when a case goes out without its
// bundle. The reason is the operating system's (e.g. "no space left on
// device"), without the state directory's paths.
func bundleNote(err error) string {
	reason := err.Error()
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err.Error()
	}
	return "diagnostics bundle could not be written: " + reason + "; it will follow"
}

// followBundle tries again to build the bundle case c owes its desks
// (Due[DueBundle]) once that time, and the backoff after a failed try,
// have come. Built, it goes to every desk that has the case (pagers
// excepted) in one case.bundle event, and the mark is removed in the same
// commit. A failing retry is logged once per case.
func (e *Engine) followBundle(ctx context.Context, pol Policy, c Case) {
	now := e.now()
	r := e.bundles[c.ID]
	if now.Before(c.Due[DueBundle]) || (r != nil && now.Before(r.at)) || e.opts.Bundle == nil {
		return
	}
	backoff := func(err error) {
		if r == nil {
			r = &bundleRetry{}
			e.bundles[c.ID] = r
			e.logger.Warn("the owed diagnostics bundle still cannot be written or sent; trying again with backoff (logged again when it is sent)",
				"case", c.ID, "device", c.Device, "err", err)
		}
		r.failures++
		r.at = now.Add(e.opts.BundleRetryInterval << min(r.failures, 4))
	}
	path, err := e.opts.Bundle(ctx, c)
	if err != nil {
		backoff(err)
		return
	}
	have, _, err := deskSet(ctx, e.st, c.ID)
	if err != nil {
		backoff(err)
		return
	}
	var desks []Desk
	for _, d := range pol.Desks {
		if have[d.Name] && d.Role != config.RolePager {
			desks = append(desks, d)
		}
	}
	updated, err := e.st.Transition(ctx, c.ID, func(c *Case) (Event, []Delivery, error) {
		if _, owed := c.Due[DueBundle]; !owed || c.State.Terminal() {
			return Event{}, nil, ErrNoChange
		}
		delete(c.Due, DueBundle)
		ev := Event{Type: EventBundleAdded, At: now, Actor: ActorAgent,
			Note: "diagnostics bundle written after all; sent to the desks that have the case",
			Data: eventData(map[string]any{"bundle": path, "failed_retries": failures(r)})}
		rows, err := outbox(desks, after(*c, now), EventBundleAdded, nil, path, now)
		return ev, rows, err
	})
	if err != nil && !errors.Is(err, ErrNoChange) {
		backoff(err)
		return
	}
	delete(e.bundles, c.ID)
	if err != nil {
		return // settled meanwhile (closed, or sent by another process)
	}
	e.logger.Info("owed diagnostics bundle written and queued for the desks", "case", updated.ID, "desks", len(desks), "bundle", path)
	e.committed(ctx, EventBundleAdded)
}

func failures(r *bundleRetry) int {
	if r == nil {
		return 0
	}
	return r.failures
}
