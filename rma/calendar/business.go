package calendar

import (
	"fmt"
	"time"
)

// maxScan bounds every day-by-day walk (a calendar whose holidays cover
// years would otherwise loop for long): about 20 years of days.
const maxScan = 20 * 366

// day is a calendar day in the region's zone.
type day struct {
	y int
	m time.Month
	d int
}

// Calendar is one region's business calendar: office hours in its zone on
// business days (Monday to Friday minus its holidays), and the optional RMA
// cut-off. It is a Clock counting business time. Build it with New; it is
// immutable and safe for concurrent use.
type Calendar struct {
	region    string
	loc       *time.Location
	hours     Hours
	holidays  map[day]bool
	cutoff    time.Duration
	hasCutoff bool
}

// New builds the calendar of a region from its Spec; empty fields take the
// region's defaults. The cut-off must lie within the office hours.
func New(region string, s Spec) (*Calendar, error) {
	def, ok := Defaults(region)
	if !ok {
		return nil, fmt.Errorf("calendar %q: not a region; use one of emea, apac, americas", region)
	}
	if s.Timezone == "" {
		s.Timezone = def.Timezone
	}
	if s.Hours == "" {
		s.Hours = def.Hours
	}
	loc, err := LoadLocation(s.Timezone)
	if err != nil {
		return nil, fmt.Errorf("calendar %s: timezone: %w", region, err)
	}
	h, err := ParseHours(s.Hours)
	if err != nil {
		return nil, fmt.Errorf("calendar %s: hours: %w", region, err)
	}
	c := &Calendar{region: region, loc: loc, hours: h, holidays: map[day]bool{}}
	for _, t := range s.Holidays {
		y, m, d := t.Date()
		c.holidays[day{y, m, d}] = true
	}
	if s.Cutoff != "" {
		if c.cutoff, err = CheckCutoff(s.Cutoff, h); err != nil {
			return nil, fmt.Errorf("calendar %s: rma_cutoff: %w", region, err)
		}
		c.hasCutoff = true
	}
	return c, nil
}

// CheckCutoff parses an RMA cut-off "HH:MM" and checks it lies within the
// office hours (after the opening, at or before the closing).
func CheckCutoff(s string, h Hours) (time.Duration, error) {
	d, err := ParseTimeOfDay(s)
	if err != nil {
		return 0, err
	}
	if d <= h.Open || d > h.Close {
		return 0, fmt.Errorf("%q is outside the office hours %s; set a time after the opening and at or before the closing", s, h)
	}
	return d, nil
}

// Region returns the calendar's region.
func (c *Calendar) Region() string { return c.region }

// Location returns the calendar's time zone.
func (c *Calendar) Location() *time.Location { return c.loc }

// Hours returns the office hours.
func (c *Calendar) Hours() Hours { return c.hours }

// Cutoff returns the RMA cut-off as an offset from local midnight, and
// whether one is set.
func (c *Calendar) Cutoff() (time.Duration, bool) { return c.cutoff, c.hasCutoff }

// dayOf returns the local day of t.
func (c *Calendar) dayOf(t time.Time) day {
	y, m, d := t.In(c.loc).Date()
	return day{y, m, d}
}

// next returns the day n days after d (n may be negative).
func (d day) next(n int) day {
	y, m, dd := time.Date(d.y, d.m, d.d+n, 12, 0, 0, 0, time.UTC).Date()
	return day{y, m, dd}
}

// business reports whether d is a business day.
func (c *Calendar) business(d day) bool {
	wd := time.Date(d.y, d.m, d.d, 12, 0, 0, 0, time.UTC).Weekday()
	return wd != time.Saturday && wd != time.Sunday && !c.holidays[d]
}

// at returns the instant of a local time of day on d; time.Date resolves
// DST gaps and folds, so each day's hours are exact.
func (c *Calendar) at(d day, offset time.Duration) time.Time {
	return time.Date(d.y, d.m, d.d, int(offset/time.Hour), int(offset%time.Hour/time.Minute), 0, 0, c.loc)
}

// bounds returns the opening and closing instants of d.
func (c *Calendar) bounds(d day) (open, closing time.Time) {
	return c.at(d, c.hours.Open), c.at(d, c.hours.Close)
}

// IsBusinessDay reports whether t falls on a business day of the region.
func (c *Calendar) IsBusinessDay(t time.Time) bool { return c.business(c.dayOf(t)) }

// IsOpen reports whether the office is open at t: a business day, within
// office hours.
func (c *Calendar) IsOpen(t time.Time) bool {
	d := c.dayOf(t)
	open, closing := c.bounds(d)
	return c.business(d) && !t.Before(open) && t.Before(closing)
}

// NextOpen returns t if the office is open then, else its next opening.
func (c *Calendar) NextOpen(t time.Time) time.Time {
	d := c.dayOf(t)
	for range maxScan {
		if c.business(d) {
			open, closing := c.bounds(d)
			if t.Before(closing) {
				return later(open, t)
			}
		}
		d = d.next(1)
	}
	return t
}

// Add returns the moment d of business time after t (AddBusinessHours):
// only office hours of business days count. A target that ends exactly at
// a closing returns the closing.
func (c *Calendar) Add(t time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return t
	}
	day := c.dayOf(t)
	for range maxScan {
		if c.business(day) {
			open, closing := c.bounds(day)
			start := later(open, t)
			if start.Before(closing) {
				left := closing.Sub(start)
				if d <= left {
					return start.Add(d)
				}
				d -= left
			}
		}
		day = day.next(1)
	}
	return t
}

// AddDays returns the moment n business days of business time after t: the
// same office time n business days later (from outside office hours, the
// count starts at the next opening).
func (c *Calendar) AddDays(t time.Time, n int) time.Time {
	return c.Add(t, time.Duration(n)*(c.hours.Close-c.hours.Open))
}

// Elapsed returns the business time between from and to (BusinessElapsed).
func (c *Calendar) Elapsed(from, to time.Time) time.Duration {
	var sum time.Duration
	last := c.dayOf(to)
	d := c.dayOf(from)
	for range maxScan {
		if !to.After(from) {
			break
		}
		if c.business(d) {
			open, closing := c.bounds(d)
			if s, e := later(open, from), earlier(closing, to); e.After(s) {
				sum += e.Sub(s)
			}
		}
		if d == last {
			break
		}
		d = d.next(1)
	}
	return sum
}

// AddBusinessDays returns the closing time of the n-th business day after
// the local day of t (n >= 1): the "within N business days" deadline, e.g.
// repair_return. For n <= 0 it is the closing of the first business day on
// or after that day.
func (c *Calendar) AddBusinessDays(t time.Time, n int) time.Time {
	d := c.dayOf(t)
	if n <= 0 {
		d, n = d.next(-1), 1
	}
	for range maxScan {
		d = d.next(1)
		if c.business(d) {
			if n--; n == 0 {
				break
			}
		}
	}
	_, closing := c.bounds(d)
	return closing
}

// CountsFrom applies the RMA cut-off to a validation time: t itself when no
// cut-off is set or t is on a business day at or before the cut-off;
// otherwise the opening of the next business day (support-model.md section
// 7: "a fault validated after it counts from the next business day").
func (c *Calendar) CountsFrom(t time.Time) time.Time {
	if !c.hasCutoff {
		return t
	}
	local := t.In(c.loc)
	d := c.dayOf(t)
	tod := time.Duration(local.Hour())*time.Hour + time.Duration(local.Minute())*time.Minute +
		time.Duration(local.Second())*time.Second + time.Duration(local.Nanosecond())
	if c.business(d) && tod <= c.cutoff {
		return t
	}
	for range maxScan {
		d = d.next(1)
		if c.business(d) {
			break
		}
	}
	open, _ := c.bounds(d)
	return open
}

// EndOfNextBusinessDay is the advance-replacement ship deadline for a fault
// validated at t: the closing of the next business day after the day the
// validation counts from (CountsFrom).
func (c *Calendar) EndOfNextBusinessDay(t time.Time) time.Time {
	return c.AddBusinessDays(c.CountsFrom(t), 1)
}

// AddCalendarDays returns t plus n calendar days at the same local time in
// the region's zone (e.g. the faulty-unit return deadline): across a DST
// change that is an hour more or less than n*24h.
func (c *Calendar) AddCalendarDays(t time.Time, n int) time.Time {
	return t.In(c.loc).AddDate(0, 0, n)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
