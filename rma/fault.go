package rma

import (
	"fmt"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
)

// Fault classes, by kind (Fault.Class, Case.Fault). The device classes
// are the collector's finding classes (package health).
const (
	// Hardware: the vendor's.
	ClassMissing        = health.ClassMissing
	ClassFailed         = health.ClassFailed
	ClassUnresponsive   = health.ClassUnresponsive
	ClassSelfTestFailed = health.ClassSelfTestFailed
	ClassSlow           = health.ClassSlow
	// Operational: in house.
	ClassPINLocked    = health.ClassPINLocked
	ClassLoginRefused = health.ClassLoginRefused
	ClassModuleError  = health.ClassModuleError
	ClassPINCountLow  = health.ClassPINCountLow
	// Firmware: the vendor's (an update).
	ClassBelowMinimum = health.ClassBelowMinimum
	ClassNotApproved  = health.ClassNotApproved
	ClassEndOfLife    = health.ClassEndOfLife
	// Contract: in house, from the inventory and the clock.
	ClassExpiring = "expiring" // expires within 60, 30 or 7 days
	ClassExpired  = "expired"
	// ClassStandardTier: a production device on a standard contract (return
	// and repair: 15 business days without a unit), noted once.
	ClassStandardTier = "standard_tier"
)

// Observed is what one poll shows of one device: its faults (at most one
// hardware, one operational and one firmware fault), and whether the token
// reported, which says which absent faults the poll could have seen.
type Observed struct {
	Serial string
	Device string
	Module string
	// At is when the poll was classified; Fresh is true when it ran in a
	// fresh worker (fresh C_Initialize).
	At    time.Time
	Fresh bool
	// TokenReported is true when the token reported in this poll.
	TokenReported bool
	Faults        []Fault
}

// Sees reports whether the poll could tell a fault of the class present or
// absent: a token that did not report says nothing about its PIN,
// firmware, self-test or speed.
func (o Observed) Sees(class string) bool { return o.TokenReported || health.StateClasses[class] }

// DeviceFaults maps the collector's findings of one device in its latest
// poll to faults (support-model.md section 2; issue 3 item 2): the
// collector decides what is wrong, this adds what a case needs. It is a
// pure function of its inputs; pol gives the module library and pool of
// the description. Each Fault's Description holds the device facts a
// vendor asks for (section 5) and what was observed; the confirmation
// (Tracker) adds since when, how often and what level 1 tried.
func DeviceFaults(st health.Device, pol Policy) Observed {
	o := Observed{Serial: st.Serial, Device: st.Device, Module: st.Module, At: st.Updated, Fresh: st.Fresh,
		TokenReported: st.Reported}
	if len(st.Findings) == 0 {
		return o
	}
	header := deviceHeader(st, pol)
	for _, f := range st.Findings {
		o.Faults = append(o.Faults, Fault{
			Serial: st.Serial, Device: st.Device, Kind: Kind(f.Kind), Class: f.Class,
			Summary:     fmt.Sprintf("%s (serial %s): %s", st.Device, st.Serial, f.Reason),
			Description: header + "Observed: " + f.Observed + "\n",
			ObservedAt:  st.Updated,
		})
	}
	return o
}

// deviceHeader is the part of a description every vendor asks for: the
// device, its versions, its library, environment, pool and contract.
func deviceHeader(st health.Device, pol Policy) string {
	var b strings.Builder
	inv := st.Inventory
	fmt.Fprintf(&b, "Device: %s, serial %s", st.Device, st.Serial)
	if t := st.Token; t != nil {
		fmt.Fprintf(&b, ", model %s by %s, firmware %s, hardware %s, label %q",
			orUnknown(t.Model), orUnknown(t.Manufacturer), orUnknown(t.Firmware), orUnknown(t.Hardware), t.Label)
		if !st.Reported {
			b.WriteString(" (as last reported")
			if !st.LastSuccess.IsZero() {
				b.WriteString(" ok at " + st.LastSuccess.UTC().Format(time.RFC3339))
			}
			b.WriteString(")")
		}
	} else {
		b.WriteString(", model and versions unknown (the token has not reported since the agent started)")
	}
	b.WriteString("\n")
	lib := "library unknown"
	if l, ok := pol.Libraries[st.Module]; ok {
		lib = "library " + l
	}
	fmt.Fprintf(&b, "PKCS#11 module: %s, %s\n", st.Module, lib)
	fmt.Fprintf(&b, "Environment: %s", orUnknown(inv.Environment))
	if inv.Pool != "" {
		fmt.Fprintf(&b, "; pool %s (min_healthy %d)", inv.Pool, pol.MinHealthy[inv.Pool])
	} else {
		b.WriteString("; no pool")
	}
	if !inv.IsCommissioned() {
		b.WriteString("; not commissioned")
	}
	b.WriteString("\n")
	b.WriteString(contractLine(inv) + "\n")
	return b.String()
}

// contractLine describes a device's support contract.
func contractLine(inv config.Device) string {
	c := inv.Contract
	if !c.HasContract() {
		return "Contract: none"
	}
	s := fmt.Sprintf("Contract: %s, tier %s, region %s", orUnknown(c.ID), c.Tier, orUnknown(c.Region))
	if !c.Expires.IsZero() {
		s += ", expires " + c.Expires.String()
	}
	return s
}

func orUnknown(s string) string {
	if strings.TrimSpace(s) == "" {
		return "unknown"
	}
	return strings.TrimSpace(s)
}
