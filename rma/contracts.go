package rma

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hsm-agent/hsm-agent/agent/config"
)

// checkContracts opens, updates and clears the contract cases of every
// device of the inventory at the engine's clock.
func (e *Engine) checkContracts(ctx context.Context) {
	pol := *e.pol.Load()
	now := e.now()
	for _, inv := range pol.Devices {
		f, present := ContractFault(inv, now)
		for _, class := range []string{ClassExpiring, ClassExpired} {
			if err := e.contract(ctx, pol, inv, class, f, present && f.Class == class); err != nil {
				e.logger.Error("contract case", "device", inv.Name, "serial", inv.Serial, "fault", class, "err", err)
			}
		}
		if err := e.standardNote(ctx, pol, inv, now); err != nil {
			e.logger.Error("contract case", "device", inv.Name, "serial", inv.Serial, "fault", ClassStandardTier, "err", err)
		}
	}
}

// standardNote opens the severity-4 contract note of a production device
// on an active standard contract (support-model.md section 7: return and
// repair leaves it 15 business days without a unit), once: never again
// once its key has a case, open or closed, also after a restart.
func (e *Engine) standardNote(ctx context.Context, pol Policy, inv config.Device, now time.Time) error {
	if inv.Environment != config.EnvProduction || inv.Contract.Tier != config.TierStandard || !Contract(inv, now).Active {
		return nil
	}
	f := Fault{Serial: inv.Serial, Device: inv.Name, Kind: KindContract, Class: ClassStandardTier, ObservedAt: now, ConfirmedAt: now}
	if _, found, err := e.st.CaseByKey(ctx, f.DedupKey()); err != nil || found {
		return err
	}
	f.Summary = fmt.Sprintf("%s (serial %s): production device on a standard contract (%s)", inv.Name, inv.Serial, orUnknown(inv.Contract.ID))
	f.Description = fmt.Sprintf("Device: %s, serial %s\nEnvironment: %s\n%s\n", inv.Name, inv.Serial, inv.Environment, contractLine(inv)) +
		fmt.Sprintf("Observed: a standard contract is return and repair: a failed unit is shipped to the vendor and comes back within %d business days of its arrival, "+
			"with no advance replacement and no service credits for missed targets. Keep a spare or another member in the device's pool, or move the contract to a premium tier.\n",
			RepairBusinessDays) + e.agentLine()
	sev, impact := Severity(SeverityInput{Kind: KindContract, Class: ClassStandardTier, Environment: inv.Environment, Commissioned: inv.IsCommissioned()})
	return e.open(ctx, pol, f, inv, sev, impact)
}

// contract opens, updates or clears the case of one contract class of a
// device: present says whether f (of that class) holds now.
func (e *Engine) contract(ctx context.Context, pol Policy, inv config.Device, class string, f Fault, present bool) error {
	key := DedupKey(inv.Serial, KindContract, class)
	prev, found, err := e.st.CaseByKey(ctx, key)
	if err != nil {
		return fmt.Errorf("look up the case of %s: %w", key, err)
	}
	open := found && !prev.State.Terminal()
	if !present {
		if !open {
			return nil
		}
		if active, err := e.active(ctx, prev.ID); err != nil || !active {
			return err
		}
		return e.clear(ctx, pol, key, "the contract is no longer "+class)
	}
	f.Description += e.agentLine()
	sev, impact := Severity(SeverityInput{Kind: KindContract, Class: class, Environment: inv.Environment, Commissioned: inv.IsCommissioned()})
	switch {
	case open:
		active, err := e.active(ctx, prev.ID)
		if err != nil {
			return err
		}
		if active && sameFacts(prev.Description, f.Description) {
			return nil
		}
		return e.recur(ctx, pol, prev, f, sev, impact, false, !active)
	case found && sameFacts(prev.Description, f.Description):
		return nil // an operator closed the case at this threshold
	}
	return e.record(ctx, pol, f, inv, sev, impact, false, true)
}

// sameFacts compares two descriptions without their agent line (an
// upgrade must not look like a new threshold).
func sameFacts(a, b string) bool { return stripAgent(a) == stripAgent(b) }

func stripAgent(s string) string {
	if i := strings.LastIndex(s, "Agent: hsm-agent "); i >= 0 {
		return s[:i]
	}
	return s
}

// Contract expiry thresholds in days: a case is opened at the first and its
// description updated at each following one.
var contractThresholds = []int{60, 30, 7}

// ContractStatus says where a device's support contract stands on a day.
type ContractStatus struct {
	// Active is true while the device has a contract (a tier) that has not
	// expired: the vendor takes its hardware and firmware cases.
	Active bool
	// Reason says why the vendor cannot take a case when Active is false.
	Reason string
	// DaysLeft counts the days from today to the expiry day (0 on the
	// expiry day itself, negative after); meaningful when Expires is set.
	DaysLeft int
}

// Contract reports the status of a device's contract at now. A contract
// covers its whole expiry day (UTC) and has expired from the next day on.
func Contract(inv config.Device, now time.Time) ContractStatus {
	c := inv.Contract
	if !c.HasContract() {
		return ContractStatus{Reason: "the device has no support contract: no vendor case, no RMA"}
	}
	if c.Expires.IsZero() {
		return ContractStatus{Active: true}
	}
	today := config.DateOf(now.UTC())
	days := int(c.Expires.Sub(today.Time).Hours() / 24)
	if days < 0 {
		return ContractStatus{DaysLeft: days, Reason: fmt.Sprintf("contract %s expired on %s: no vendor case, no RMA", orUnknown(c.ID), c.Expires)}
	}
	return ContractStatus{Active: true, DaysLeft: days}
}

// ContractFault returns the contract fault of a device at now, if any:
// expired, or expiring within 60, 30 or 7 days. The description names the
// threshold, not the day count, so it changes only when a threshold is
// crossed. These faults come from the inventory and the clock and need no
// confirmation.
func ContractFault(inv config.Device, now time.Time) (Fault, bool) {
	c := inv.Contract
	if !c.HasContract() || c.Expires.IsZero() {
		return Fault{}, false
	}
	st := Contract(inv, now)
	f := Fault{Serial: inv.Serial, Device: inv.Name, Kind: KindContract, ObservedAt: now, ConfirmedAt: now}
	header := fmt.Sprintf("Device: %s, serial %s\nEnvironment: %s\n%s\n", inv.Name, inv.Serial, orUnknown(inv.Environment), contractLine(inv))
	if !st.Active {
		f.Class = ClassExpired
		f.Summary = fmt.Sprintf("%s (serial %s): support contract %s expired on %s", inv.Name, inv.Serial, orUnknown(c.ID), c.Expires)
		f.Description = header + fmt.Sprintf("Observed: the support contract expired on %s; the vendor takes no case and no RMA for this device until it is renewed (update contract.expires in the inventory).\n", c.Expires)
		return f, true
	}
	threshold := 0
	for _, t := range contractThresholds {
		if st.DaysLeft <= t {
			threshold = t
		}
	}
	if threshold == 0 {
		return Fault{}, false
	}
	f.Class = ClassExpiring
	f.Summary = fmt.Sprintf("%s (serial %s): support contract %s expires on %s (within %d days)", inv.Name, inv.Serial, orUnknown(c.ID), c.Expires, threshold)
	f.Description = header + fmt.Sprintf("Observed: the support contract expires on %s, within %d days (reminders at %s days before). Renew it to keep vendor support and hardware replacement.\n",
		c.Expires, threshold, joinInts(contractThresholds, "/"))
	return f, true
}

func joinInts(v []int, sep string) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, sep)
}
