package rma

import (
	"strings"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
)

// FleetFirmware is the fleet's firmware for a model: the version most
// inventory devices of that model run (as their tokens last reported it);
// a tie goes to the newest version. "" when no device of the model has
// reported a firmware. A replacement unit must run it, and an RMA request
// asks for it (support-model.md section 5).
func FleetFirmware(p health.Poll, model string) string {
	model = strings.TrimSpace(model)
	count := map[string]int{}
	for _, d := range p.Devices {
		if d.Token == nil || strings.TrimSpace(d.Token.Model) != model || strings.TrimSpace(d.Token.Firmware) == "" {
			continue
		}
		count[strings.TrimSpace(d.Token.Firmware)]++
	}
	best := ""
	for v, n := range count {
		switch {
		case best == "" || n > count[best]:
			best = v
		case n == count[best] && newer(v, best):
			best = v
		}
	}
	return best
}

// newer reports whether version a is newer than b; unparseable versions
// order after parseable ones, and among themselves by text, so the choice
// is deterministic.
func newer(a, b string) bool {
	c, err := health.CompareVersions(a, b)
	if err != nil {
		_, errA := health.CompareVersions(a, a)
		_, errB := health.CompareVersions(b, b)
		if (errA == nil) != (errB == nil) {
			return errA == nil
		}
		return a > b
	}
	return c > 0
}

// DeviceModel is the model a device's token last reported, "" if it never
// reported.
func DeviceModel(p health.Poll, device string) string {
	return strings.TrimSpace(deviceToken(p, device).Model)
}

// deviceToken is what a device's token last reported (zero if it never
// reported).
func deviceToken(p health.Poll, device string) health.Token {
	for _, d := range p.Devices {
		if d.Device == device && d.Token != nil {
			return *d.Token
		}
	}
	return health.Token{}
}

// Keys of the RMA request (RMARequest) in the data of the confirmed and
// authorized events.
const (
	RequestFirmware = "requested_firmware"
	RequestShipTo   = "ship_to"
	RequestMissing  = "missing"
)

// RMARequest is what every RMA request to the vendor carries besides the
// case (support-model.md section 5): the requested firmware (the fleet's,
// FleetFirmware) and the site's shipping address and contact. It goes into
// the data of the case's confirmed and authorized events. What the
// inventory does not say is listed under "missing", each as the
// configuration field to fill, so the desk and the operator see it.
func RMARequest(c Case, inv config.Device, fleetFirmware string) map[string]any {
	site := inv.Site
	shipTo := map[string]any{"address": strings.TrimSpace(site.Address), "contact": strings.TrimSpace(site.Contact)}
	if p := strings.TrimSpace(site.Phone); p != "" {
		shipTo["phone"] = p
	}
	if cc := strings.TrimSpace(site.Country); cc != "" {
		shipTo["country"] = cc
	}
	req := map[string]any{RequestFirmware: strings.TrimSpace(fleetFirmware), RequestShipTo: shipTo}
	name := c.Device
	if name == "" {
		name = inv.Name
	}
	var missing []string
	if shipTo["address"] == "" {
		missing = append(missing, "devices["+name+"].site.address")
	}
	if shipTo["contact"] == "" {
		missing = append(missing, "devices["+name+"].site.contact")
	}
	if req[RequestFirmware] == "" {
		missing = append(missing, RequestFirmware+": no device of the model has reported its firmware")
	}
	if len(missing) > 0 {
		req[RequestMissing] = missing
	}
	return req
}
