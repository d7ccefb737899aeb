package calendar

import (
	"fmt"
	"testing"
	"time"
)

// op is one calendar question and its answer. Times are written in UTC so
// that every case also checks the region's zone and its DST offset.
type op struct {
	name string
	do   string // open, add, elapsed, days, bdays, next, counts, cal
	t    string // RFC 3339
	arg  string // a duration, an RFC 3339 end time, or a number of days
	want string // "true"/"false", RFC 3339, or a duration
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func dates(t *testing.T, days ...string) []time.Time {
	var out []time.Time
	for _, d := range days {
		v, err := time.Parse(time.DateOnly, d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// run answers each op with c and compares.
func run(t *testing.T, c *Calendar, ops []op) {
	t.Helper()
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			at := mustTime(t, o.t)
			n := 0
			if o.do == "days" || o.do == "bdays" || o.do == "cal" {
				fmt.Sscan(o.arg, &n)
			}
			var got string
			switch o.do {
			case "open":
				got = fmt.Sprint(c.IsOpen(at))
			case "add":
				d, err := time.ParseDuration(o.arg)
				if err != nil {
					t.Fatal(err)
				}
				got = c.Add(at, d).UTC().Format(time.RFC3339)
			case "elapsed":
				got = c.Elapsed(at, mustTime(t, o.arg)).String()
			case "days":
				got = c.AddDays(at, n).UTC().Format(time.RFC3339)
			case "bdays":
				got = c.AddBusinessDays(at, n).UTC().Format(time.RFC3339)
			case "next":
				got = c.EndOfNextBusinessDay(at).UTC().Format(time.RFC3339)
			case "counts":
				got = c.CountsFrom(at).UTC().Format(time.RFC3339)
			case "cal":
				got = c.AddCalendarDays(at, n).UTC().Format(time.RFC3339)
			default:
				t.Fatalf("unknown op %q", o.do)
			}
			if got != o.want {
				t.Errorf("%s(%s, %s) = %s, want %s", o.do, o.t, o.arg, got, o.want)
			}
		})
	}
}

// TestEMEA: Europe/London 08:30-17:00 (default), BST from 29 March 2026
// (01:00 UTC) to 25 October 2026, Easter and Christmas holidays, a 15:00
// cut-off.
func TestEMEA(t *testing.T) {
	t.Parallel()
	c, err := New(EMEA, Spec{Holidays: dates(t, "2026-04-03", "2026-04-06", "2026-12-25", "2026-12-28", "2027-01-01"), Cutoff: "15:00"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c, []op{
		{"before opening GMT", "open", "2026-03-27T08:29:00Z", "", "false"},
		{"at opening GMT", "open", "2026-03-27T08:30:00Z", "", "true"},
		{"last second GMT", "open", "2026-03-27T16:59:59Z", "", "true"},
		{"at closing GMT", "open", "2026-03-27T17:00:00Z", "", "false"},
		{"open in BST at 07:45 UTC", "open", "2026-03-30T07:45:00Z", "", "true"},
		{"closed in BST at 16:30 UTC", "open", "2026-03-30T16:30:00Z", "", "false"},
		{"saturday", "open", "2026-03-28T12:00:00Z", "", "false"},
		{"good friday", "open", "2026-04-03T10:00:00Z", "", "false"},
		{"4h over the weekend and spring forward", "add", "2026-03-27T15:00:00Z", "4h", "2026-03-30T09:30:00Z"},
		{"4h over easter", "add", "2026-04-02T15:00:00Z", "4h", "2026-04-07T10:30:00Z"},
		{"ends at the closing", "add", "2026-03-30T11:00:00Z", "5h", "2026-03-30T16:00:00Z"},
		{"from saturday", "add", "2026-03-28T10:00:00Z", "8h", "2026-03-30T15:30:00Z"},
		{"zero", "add", "2026-03-28T10:00:00Z", "0s", "2026-03-28T10:00:00Z"},
		{"elapsed over spring forward", "elapsed", "2026-03-27T16:00:00Z", "2026-03-30T09:30:00Z", "3h0m0s"},
		{"elapsed over fall back", "elapsed", "2026-10-23T15:00:00Z", "2026-10-26T10:00:00Z", "2h30m0s"},
		{"elapsed backwards", "elapsed", "2026-10-26T10:00:00Z", "2026-10-23T15:00:00Z", "0s"},
		{"one business day over fall back", "days", "2026-10-23T14:00:00Z", "1", "2026-10-26T15:00:00Z"},
		{"15 business days over christmas", "bdays", "2026-12-17T10:00:00Z", "15", "2027-01-12T17:00:00Z"},
		{"ship: before the cut-off", "next", "2026-10-23T13:00:00Z", "", "2026-10-26T17:00:00Z"},
		{"ship: at the cut-off", "next", "2026-10-23T14:00:00Z", "", "2026-10-26T17:00:00Z"},
		{"ship: after the cut-off (15:30 BST, 14:30 UTC)", "next", "2026-10-23T14:30:00Z", "", "2026-10-27T17:00:00Z"},
		{"ship: validated on saturday", "next", "2026-03-28T10:00:00Z", "", "2026-03-31T16:00:00Z"},
		{"ship: before easter", "next", "2026-04-02T09:00:00Z", "", "2026-04-07T16:00:00Z"},
		{"counts from monday after the cut-off", "counts", "2026-03-27T15:30:00Z", "", "2026-03-30T07:30:00Z"},
		{"counts from now before the cut-off", "counts", "2026-03-27T10:00:00Z", "", "2026-03-27T10:00:00Z"},
		{"30 calendar days over fall back", "cal", "2026-10-10T09:00:00Z", "30", "2026-11-09T10:00:00Z"},
		{"30 calendar days over spring forward", "cal", "2026-03-20T10:00:00Z", "30", "2026-04-19T09:00:00Z"},
	})
}

// TestAPAC: Asia/Hong_Kong 09:00-17:00 (default), UTC+8 all year (no
// DST), Lunar New Year and National Day holidays, no cut-off.
func TestAPAC(t *testing.T) {
	t.Parallel()
	c, err := New(APAC, Spec{Holidays: dates(t, "2026-02-17", "2026-10-01")})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c, []op{
		{"at opening", "open", "2026-02-16T01:00:00Z", "", "true"},
		{"before opening", "open", "2026-02-16T00:59:00Z", "", "false"},
		{"at closing", "open", "2026-02-16T09:00:00Z", "", "false"},
		{"lunar new year", "open", "2026-02-17T03:00:00Z", "", "false"},
		{"no DST: the same UTC hour opens in march", "open", "2026-03-09T01:30:00Z", "", "true"},
		{"no DST: and in november", "open", "2026-11-02T01:30:00Z", "", "true"},
		{"4h over the holiday", "add", "2026-02-16T07:00:00Z", "4h", "2026-02-18T03:00:00Z"},
		{"8h from sunday evening", "add", "2026-02-15T12:00:00Z", "8h", "2026-02-16T09:00:00Z"},
		{"elapsed over weekend and holiday", "elapsed", "2026-02-13T08:00:00Z", "2026-02-18T02:00:00Z", "10h0m0s"},
		{"ship: friday afternoon, no cut-off", "next", "2026-02-13T08:30:00Z", "", "2026-02-16T09:00:00Z"},
		{"ship: friday evening, no cut-off", "next", "2026-02-13T12:00:00Z", "", "2026-02-16T09:00:00Z"},
		{"ship: monday before the holiday", "next", "2026-02-16T05:00:00Z", "", "2026-02-18T09:00:00Z"},
		{"no cut-off counts from now", "counts", "2026-02-13T12:00:00Z", "", "2026-02-13T12:00:00Z"},
		{"15 business days over national day", "bdays", "2026-09-21T03:00:00Z", "15", "2026-10-13T09:00:00Z"},
		{"30 calendar days are 720h", "cal", "2026-03-01T02:00:00Z", "30", "2026-03-31T02:00:00Z"},
	})
}

// TestAmericas: America/New_York 09:00-21:00 (default), EDT from 8 March
// 2026 to 1 November 2026, Independence Day (observed) and Thanksgiving,
// a 15:00 cut-off.
func TestAmericas(t *testing.T) {
	t.Parallel()
	c, err := New(Americas, Spec{Holidays: dates(t, "2026-07-03", "2026-11-26"), Cutoff: "15:00"})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c, []op{
		{"at opening EST", "open", "2026-03-06T14:00:00Z", "", "true"},
		{"before opening EST", "open", "2026-03-06T13:59:00Z", "", "false"},
		{"open in EDT at 13:30 UTC", "open", "2026-03-09T13:30:00Z", "", "true"},
		{"closed in EST at 13:30 UTC", "open", "2026-03-06T13:30:00Z", "", "false"},
		{"friday evening is saturday in UTC", "open", "2026-03-07T01:30:00Z", "", "true"},
		{"friday closing", "open", "2026-03-07T02:00:00Z", "", "false"},
		{"4h over spring forward", "add", "2026-03-06T23:00:00Z", "4h", "2026-03-09T14:00:00Z"},
		{"8h over fall back", "add", "2026-10-30T23:00:00Z", "8h", "2026-11-02T20:00:00Z"},
		{"elapsed over independence day", "elapsed", "2026-07-02T23:00:00Z", "2026-07-06T14:00:00Z", "3h0m0s"},
		{"one business day over spring forward", "days", "2026-03-06T20:00:00Z", "1", "2026-03-09T19:00:00Z"},
		{"ship: before the cut-off, over thanksgiving", "next", "2026-11-25T19:00:00Z", "", "2026-11-28T02:00:00Z"},
		{"ship: after the cut-off, over thanksgiving", "next", "2026-11-25T20:30:00Z", "", "2026-12-01T02:00:00Z"},
		{"ship: over spring forward", "next", "2026-03-06T19:30:00Z", "", "2026-03-10T01:00:00Z"},
		{"ship: 18:00 UTC is 14:00 EDT, before the cut-off", "next", "2026-10-30T18:00:00Z", "", "2026-11-03T02:00:00Z"},
		{"15 business days over thanksgiving", "bdays", "2026-11-16T15:00:00Z", "15", "2026-12-09T02:00:00Z"},
		{"30 calendar days over spring forward", "cal", "2026-02-20T15:00:00Z", "30", "2026-03-22T14:00:00Z"},
	})
}

func TestWall(t *testing.T) {
	t.Parallel()
	var c Clock = Wall{}
	sat := mustTime(t, "2026-03-28T23:00:00Z")
	if got := c.Add(sat, 4*time.Hour); !got.Equal(mustTime(t, "2026-03-29T03:00:00Z")) {
		t.Errorf("Add = %v", got)
	}
	if got := c.AddDays(sat, 3); !got.Equal(sat.Add(72 * time.Hour)) {
		t.Errorf("AddDays = %v", got)
	}
	if got := c.Elapsed(sat, sat.Add(30*time.Hour)); got != 30*time.Hour {
		t.Errorf("Elapsed = %v", got)
	}
	if got := c.Elapsed(sat, sat.Add(-time.Hour)); got != 0 {
		t.Errorf("Elapsed backwards = %v", got)
	}
	if !c.IsOpen(sat) {
		t.Error("wall time is always open")
	}
}

func TestDefaultsAndSpec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ region, zone, hours string }{
		{EMEA, "Europe/London", "08:30-17:00"},
		{APAC, "Asia/Hong_Kong", "09:00-17:00"},
		{Americas, "America/New_York", "09:00-21:00"},
	} {
		c, err := New(tc.region, Spec{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Location().String() != tc.zone || c.Hours().String() != tc.hours || c.Region() != tc.region {
			t.Errorf("%s: %s %s", tc.region, c.Location(), c.Hours())
		}
		if _, ok := c.Cutoff(); ok {
			t.Errorf("%s: a cut-off without one configured", tc.region)
		}
	}
	c, err := New(EMEA, Spec{Timezone: "Europe/Paris", Hours: "00:00-24:00", Cutoff: "23:30"})
	if err != nil {
		t.Fatal(err)
	}
	// A midnight-to-midnight office counts whole weekdays: Friday from
	// 13:00 CET (11h), Monday to 14:00 CEST (14h).
	if got := c.Elapsed(mustTime(t, "2026-03-27T12:00:00Z"), mustTime(t, "2026-03-30T12:00:00Z")); got != 25*time.Hour {
		t.Errorf("24h office: %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		region string
		spec   Spec
		want   string
	}{
		{"europe", Spec{}, `calendar "europe": not a region; use one of emea, apac, americas`},
		{EMEA, Spec{Timezone: "Europe/Londn"}, `calendar emea: timezone: "Europe/Londn" is not a time zone; use an IANA name such as "Europe/London"`},
		{EMEA, Spec{Timezone: "Local"}, `calendar emea: timezone: "Local" is not a time zone; use an IANA name such as "Europe/London"`},
		{EMEA, Spec{Hours: "8:30-17:00"}, `calendar emea: hours: "8:30-17:00" is not office hours; use HH:MM-HH:MM in 24-hour time, e.g. "08:30-17:00"`},
		{EMEA, Spec{Hours: "17:00-08:30"}, `calendar emea: hours: "17:00-08:30" closes before it opens; use HH:MM-HH:MM with the opening first, e.g. "08:30-17:00"`},
		{EMEA, Spec{Hours: "08:30-24:01"}, `calendar emea: hours: "08:30-24:01" is not office hours; use HH:MM-HH:MM in 24-hour time, e.g. "08:30-17:00"`},
		{EMEA, Spec{Cutoff: "3pm"}, `calendar emea: rma_cutoff: "3pm" is not a time of day; use HH:MM in 24-hour time, e.g. "15:00"`},
		{EMEA, Spec{Cutoff: "24:00"}, `calendar emea: rma_cutoff: "24:00" is not a time of day; use HH:MM in 24-hour time, e.g. "15:00"`},
		{EMEA, Spec{Cutoff: "18:00"}, `calendar emea: rma_cutoff: "18:00" is outside the office hours 08:30-17:00; set a time after the opening and at or before the closing`},
		{EMEA, Spec{Cutoff: "08:30"}, `calendar emea: rma_cutoff: "08:30" is outside the office hours 08:30-17:00; set a time after the opening and at or before the closing`},
	} {
		_, err := New(tc.region, tc.spec)
		if err == nil {
			t.Errorf("New(%s, %+v) accepted", tc.region, tc.spec)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("New(%s, %+v):\n got %s\nwant %s", tc.region, tc.spec, err, tc.want)
		}
	}
}
