package rma

import (
	"fmt"
	"strings"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
)

// modulePrefix marks the pseudo-serial of a module-level case: a fault of
// a whole PKCS#11 module (the library would not load or initialise, or its
// worker died before any token was probed) is one case for the module,
// never one per device.
const modulePrefix = "module:"

// ModuleSerial is the serial a module-level case carries in place of a
// device serial, so that its dedup key is one per module.
func ModuleSerial(module string) string { return modulePrefix + module }

// ModuleOf returns the module of a module-level case's serial; ok is false
// for a device serial.
func ModuleOf(serial string) (module string, ok bool) {
	return strings.CutPrefix(serial, modulePrefix)
}

// moduleCase is what the engine needs to record a module-level fault: the
// observation for the tracker, and the severity and routing of the case.
type moduleCase struct {
	observed Observed
	sev      int
	impact   string
	// inv stands in for the inventory device in routing: the module, in
	// the environment of its most affected device.
	inv config.Device
}

// ModuleFaults turns one poll of a module into at most one module-level
// fault. affected are the module's devices whose state is the module's
// (DeviceStatus.ModuleWide); none means the module is fine (the
// observation then clears a confirmed module fault). The case's severity
// is the worst its devices would get, each rated as if it alone were down
// (with every affected device counted down in its pool).
func ModuleFaults(pol Policy, snap health.Poll, module string, affected []health.Device) moduleCase {
	mc := moduleCase{
		observed: Observed{Serial: ModuleSerial(module), Device: "module " + module, Module: module},
		sev:      SeverityLow + 1,
		inv:      config.Device{Name: "module " + module, Serial: ModuleSerial(module), Module: module},
	}
	if m, ok := snap.Module(module); ok {
		mc.observed.At, mc.observed.Fresh = m.Start.Add(m.Duration), m.Fresh
	}
	if len(affected) == 0 {
		return mc
	}
	first := affected[0]
	mc.observed.At = first.Updated
	names := make([]string, len(affected))
	for i, d := range affected {
		names[i] = fmt.Sprintf("%s (serial %s, %s)", d.Device, d.Serial, orUnknown(d.Inventory.Environment))
	}
	lib := "library unknown"
	if l, ok := pol.Libraries[module]; ok {
		lib = "library " + l
	}
	f := Fault{
		Serial: ModuleSerial(module), Device: "module " + module, Kind: KindOperational, Class: ClassModuleError,
		Summary: fmt.Sprintf("PKCS#11 module %s failed: %d device(s) could not be probed", module, len(affected)),
		Description: fmt.Sprintf("PKCS#11 module: %s, %s\nDevices not probed (the module failed before any token answered; no device is blamed): %s\nObserved: %s\n",
			module, lib, strings.Join(names, "; "), first.Reason),
		ObservedAt: first.Updated,
	}
	mc.observed.Faults = []Fault{f}
	for _, d := range affected {
		sev, impact := Severity(severityInput(pol, snap, d, f))
		if sev < mc.sev {
			mc.sev, mc.impact = sev, fmt.Sprintf("%s (worst of %d devices: %s)", impact, len(affected), d.Device)
			mc.inv.Environment, mc.inv.Pool = d.Inventory.Environment, d.Inventory.Pool
		}
	}
	return mc
}
