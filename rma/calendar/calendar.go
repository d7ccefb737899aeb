// Package calendar does the time arithmetic of the support model
// (support-model.md sections 1, 3 and 7): the vendor's regional office
// hours, business days (Monday to Friday minus the region's holidays), the
// optional RMA cut-off, and the two ways a contract counts time: business
// time for the business-hours tiers (premium, standard) and wall time for
// the 24/7 tier (premium-plus).
//
// Nothing here reads the clock: every function takes the time it works on,
// so the engine and the tests inject theirs. The package imports only the
// standard library; agent/config uses its parsers to validate
// calendars.<region>.
package calendar

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	// The zone database is built in, so a calendar's zone never depends on
	// the host having tzdata (minimal images and containers lack it).
	_ "time/tzdata"
)

// Regions of the vendor's support offices (the keys of calendars.<region>).
const (
	EMEA     = "emea"
	APAC     = "apac"
	Americas = "americas"
)

// Regions lists the regions in the order messages name them.
func Regions() []string { return []string{EMEA, APAC, Americas} }

// Spec is one region's calendar as configured. An empty field takes the
// region's default (Defaults).
type Spec struct {
	// Timezone is an IANA zone name such as "Europe/London".
	Timezone string
	// Hours are the office hours, "HH:MM-HH:MM" in Timezone.
	Hours string
	// Holidays are the region's public holidays; only the year, month and
	// day of each count (config.Date holds midnight UTC of the day).
	Holidays []time.Time
	// Cutoff is the RMA cut-off "HH:MM" (optional): a fault validated after
	// it counts from the next business day.
	Cutoff string
}

// defaults are the office hours of support-model.md section 1.
var defaults = map[string]Spec{
	EMEA:     {Timezone: "Europe/London", Hours: "08:30-17:00"},
	APAC:     {Timezone: "Asia/Hong_Kong", Hours: "09:00-17:00"},
	Americas: {Timezone: "America/New_York", Hours: "09:00-21:00"},
}

// Defaults returns the default time zone and office hours of a region
// (support-model.md section 1), or false for an unknown region.
func Defaults(region string) (Spec, bool) {
	s, ok := defaults[region]
	return s, ok
}

// Hours are daily office hours as offsets from local midnight; Close may be
// 24h (an office open until midnight).
type Hours struct{ Open, Close time.Duration }

// String formats the hours as "HH:MM-HH:MM".
func (h Hours) String() string { return formatTimeOfDay(h.Open) + "-" + formatTimeOfDay(h.Close) }

// ParseHours parses office hours written "HH:MM-HH:MM", the opening before
// the closing (24:00 is allowed as a closing time).
func ParseHours(s string) (Hours, error) {
	open, closing, ok := strings.Cut(s, "-")
	o, err1 := parseClock(open, false)
	c, err2 := parseClock(closing, true)
	if !ok || err1 != nil || err2 != nil {
		return Hours{}, fmt.Errorf("%q is not office hours; use HH:MM-HH:MM in 24-hour time, e.g. \"08:30-17:00\"", s)
	}
	if o >= c {
		return Hours{}, fmt.Errorf("%q closes before it opens; use HH:MM-HH:MM with the opening first, e.g. \"08:30-17:00\"", s)
	}
	return Hours{Open: o, Close: c}, nil
}

// ParseTimeOfDay parses a time of day written "HH:MM" (00:00 to 23:59).
func ParseTimeOfDay(s string) (time.Duration, error) {
	d, err := parseClock(s, false)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day; use HH:MM in 24-hour time, e.g. \"15:00\"", s)
	}
	return d, nil
}

var errClock = errors.New("not HH:MM")

// parseClock parses exactly "HH:MM"; allow24 accepts "24:00".
func parseClock(s string, allow24 bool) (time.Duration, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, errClock
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:])
	switch {
	case err1 != nil || err2 != nil || h < 0 || m < 0 || m > 59:
		return 0, errClock
	case h == 24 && m == 0 && allow24:
	case h > 23:
		return 0, errClock
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, nil
}

func formatTimeOfDay(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
}

// LoadLocation loads an IANA time zone. It refuses "" and "Local": a
// calendar must not depend on the host's own zone.
func LoadLocation(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%q is not a time zone; use an IANA name such as \"Europe/London\"", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil { // err only repeats the name
		return nil, fmt.Errorf("%q is not a time zone; use an IANA name such as \"Europe/London\"", name)
	}
	return loc, nil
}

// Clock counts time toward a target: business time (a *Calendar) or wall
// time (Wall). The engine picks one per contract tier with For.
type Clock interface {
	// Add returns the moment d of counted time after t.
	Add(t time.Time, d time.Duration) time.Time
	// AddDays returns the moment n counted days after t: n business days
	// of business time, or n times 24 hours of wall time.
	AddDays(t time.Time, n int) time.Time
	// Elapsed returns the counted time between from and to (0 if to is
	// not after from).
	Elapsed(from, to time.Time) time.Duration
	// IsOpen reports whether the clock runs at t.
	IsOpen(t time.Time) bool
}

// Wall counts wall time, 24/7: the premium-plus tier.
type Wall struct{}

// Add returns t + d.
func (Wall) Add(t time.Time, d time.Duration) time.Time { return t.Add(d) }

// AddDays returns t + n*24h.
func (Wall) AddDays(t time.Time, n int) time.Time { return t.Add(time.Duration(n) * 24 * time.Hour) }

// Elapsed returns to - from, or 0.
func (Wall) Elapsed(from, to time.Time) time.Duration { return max(0, to.Sub(from)) }

// IsOpen is always true.
func (Wall) IsOpen(time.Time) bool { return true }
