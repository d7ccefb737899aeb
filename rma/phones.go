package rma

import (
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma/calendar"
)

// PhoneLine is a vendor support phone line, for pages that get a human to
// call (support-model.md section 7).
type PhoneLine struct {
	// Key is what matched: a region ("emea") or a country code ("AU").
	Key    string `json:"key"`
	Number string `json:"number"`
	// Hours are the line's office hours where the vendor publishes them
	// ("08:30-17:00" in the region's zone); "" when not published.
	Hours string `json:"hours,omitempty"`
	// Source is "desk" (the desk's phones) or ProfileNShield.
	Source string `json:"source"`
}

// ProfileNShield is the built-in vendor profile whose lines are the
// default phones of every vendor desk.
const ProfileNShield = "nshield"

// nshieldLines are the lines of the nShield-class vendor guide
// (support-model.md section 7), by country code and by region.
var nshieldLines = map[string]PhoneLine{
	calendar.EMEA:     {Number: "+44 1223 622444", Hours: "08:30-17:00"},
	calendar.APAC:     {Number: "+852 3008 3188", Hours: "09:00-17:00"},
	calendar.Americas: {Number: "+1 (833) 425-1990", Hours: "09:00-21:00"},
	"AU":              {Number: "+61 8 9126 9070"},
	"JP":              {Number: "+81 50 3196 4994"},
	"BR":              {Number: "+55 11 3230 5205"},
}

// PhoneFor returns the vendor line for a device's site: the desk's phones
// by the site's country, then by its region; else the built-in nshield
// profile by country, then by region (a country line wins over its
// region's within each source). False when none has a number.
func PhoneFor(deskPhones map[string]string, country, region string) (PhoneLine, bool) {
	for _, key := range []string{country, region} {
		if n := deskPhones[key]; key != "" && n != "" {
			return PhoneLine{Key: key, Number: n, Source: "desk"}, true
		}
	}
	for _, key := range []string{country, region} {
		if l, ok := nshieldLines[key]; key != "" && ok {
			l.Key, l.Source = key, ProfileNShield
			return l, true
		}
	}
	return PhoneLine{}, false
}

// VendorDeskOpen reports whether the vendor's desk handles tickets at t:
// office hours of a business day in the region's calendar, on every tier
// (support-model.md section 1: portal and e-mail tickets are handled in
// office hours only).
func VendorDeskOpen(cal *calendar.Calendar, t time.Time) bool { return cal.IsOpen(t) }

// PhoneOnly reports whether only the phone line answers a premium-plus
// case at t: a weekend or a holiday of the region.
func PhoneOnly(tier string, cal *calendar.Calendar, t time.Time) bool {
	return tier == config.TierPremiumPlus && !cal.IsBusinessDay(t)
}

// PageRule decides the out-of-hours page of section 7 for a case opened at
// t: severity 1 always pages; severity 2 pages when the vendor's desk is
// closed (a severity 2 filed then waits for the next business day unless
// someone calls). why says which rule applies, for the page and the log.
func PageRule(severity int, tier string, cal *calendar.Calendar, t time.Time) (page bool, why string) {
	switch {
	case severity == SeverityUrgent:
		return true, "severity 1 is always phoned"
	case severity != SeverityHigh:
		return false, ""
	case PhoneOnly(tier, cal, t):
		return true, "severity 2 on a weekend or holiday: only the vendor's phone line answers premium-plus"
	case !VendorDeskOpen(cal, t):
		return true, "severity 2 outside the vendor's office hours: the ticket waits for the next business day unless someone calls"
	}
	return false, ""
}
