package rma

import (
	"testing"
	"time"

	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

func TestPhoneFor(t *testing.T) {
	t.Parallel()
	desk := map[string]string{"emea": "+44 20 7946 0000", "JP": "+81 3 0000 0000"}
	for _, tc := range []struct {
		name            string
		phones          map[string]string
		country, region string
		want            PhoneLine
		ok              bool
	}{
		{"profile region", nil, "", "emea", PhoneLine{Key: "emea", Number: "+44 1223 622444", Hours: "08:30-17:00", Source: "nshield"}, true},
		{"profile apac", nil, "HK", "apac", PhoneLine{Key: "apac", Number: "+852 3008 3188", Hours: "09:00-17:00", Source: "nshield"}, true},
		{"profile americas", nil, "US", "americas", PhoneLine{Key: "americas", Number: "+1 (833) 425-1990", Hours: "09:00-21:00", Source: "nshield"}, true},
		{"profile country wins over region", nil, "AU", "apac", PhoneLine{Key: "AU", Number: "+61 8 9126 9070", Source: "nshield"}, true},
		{"profile japan", nil, "JP", "apac", PhoneLine{Key: "JP", Number: "+81 50 3196 4994", Source: "nshield"}, true},
		{"profile brazil", nil, "BR", "americas", PhoneLine{Key: "BR", Number: "+55 11 3230 5205", Source: "nshield"}, true},
		{"desk region overrides the profile", desk, "GB", "emea", PhoneLine{Key: "emea", Number: "+44 20 7946 0000", Source: "desk"}, true},
		{"desk country overrides the profile's", desk, "JP", "apac", PhoneLine{Key: "JP", Number: "+81 3 0000 0000", Source: "desk"}, true},
		{"desk without the key falls back to the profile", desk, "BR", "americas", PhoneLine{Key: "BR", Number: "+55 11 3230 5205", Source: "nshield"}, true},
		{"desk region beats the profile's country", map[string]string{"apac": "+852 0000"}, "AU", "apac", PhoneLine{Key: "apac", Number: "+852 0000", Source: "desk"}, true},
		{"nothing known", nil, "", "", PhoneLine{}, false},
		{"unknown region", nil, "", "mars", PhoneLine{}, false},
	} {
		got, ok := PhoneFor(tc.phones, tc.country, tc.region)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: PhoneFor = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestPageRule: severity 1 always pages, severity 2 when the vendor's desk
// is closed; the desk's hours are the region's (Americas 09:00-21:00
// America/New_York, Thanksgiving off).
func TestPageRule(t *testing.T) {
	t.Parallel()
	hol, _ := time.Parse(time.DateOnly, "2026-11-26")
	cal, err := calendar.New(calendar.Americas, calendar.Spec{Holidays: []time.Time{hol}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		severity int
		tier     string
		at       string
		page     bool
		open     bool
		phone    bool
	}{
		{"sev 1 in office hours", 1, "standard", "2026-11-25T15:00:00Z", true, true, false},
		{"sev 2 in office hours", 2, "premium", "2026-11-25T15:00:00Z", false, true, false},
		{"sev 2 at 20:30 EST (01:30 UTC next day) is still open", 2, "premium", "2026-11-25T01:30:00Z", false, true, false},
		{"sev 2 at 21:00 EST", 2, "premium", "2026-11-25T02:00:00Z", true, false, false},
		{"sev 2 on thanksgiving", 2, "standard", "2026-11-26T16:00:00Z", true, false, false},
		{"sev 2 premium-plus on thanksgiving: phone only", 2, "premium-plus", "2026-11-26T16:00:00Z", true, false, true},
		{"sev 2 premium-plus saturday", 2, "premium-plus", "2026-11-28T16:00:00Z", true, false, true},
		{"sev 2 premium-plus weekday night", 2, "premium-plus", "2026-11-25T03:00:00Z", true, false, false},
		{"sev 3 never pages", 3, "premium-plus", "2026-11-28T16:00:00Z", false, false, true},
	} {
		at := ts(t, tc.at)
		page, why := PageRule(tc.severity, tc.tier, cal, at)
		if page != tc.page || (page && why == "") || VendorDeskOpen(cal, at) != tc.open || PhoneOnly(tc.tier, cal, at) != tc.phone {
			t.Errorf("%s: page %v (%q), desk open %v, phone only %v; want %v, %v, %v", tc.name, page, why,
				VendorDeskOpen(cal, at), PhoneOnly(tc.tier, cal, at), tc.page, tc.open, tc.phone)
		}
	}
}
