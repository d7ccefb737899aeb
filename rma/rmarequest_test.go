package rma

import (
	"reflect"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/collector/health"
)

func fleetOf(tokens ...health.Token) health.Poll {
	var p health.Poll
	for i := range tokens {
		p.Devices = append(p.Devices, health.Device{Device: string(rune('a' + i)), Token: &tokens[i]})
	}
	return p
}

func TestFleetFirmware(t *testing.T) {
	nc, luna := "nShield Connect", "Luna"
	for _, tc := range []struct {
		name  string
		poll  health.Poll
		model string
		want  string
	}{
		{"majority", fleetOf(health.Token{Model: nc, Firmware: "12.60"}, health.Token{Model: nc, Firmware: "12.60"}, health.Token{Model: nc, Firmware: "12.80"}), nc, "12.60"},
		{"other models do not count", fleetOf(health.Token{Model: nc, Firmware: "12.60"}, health.Token{Model: luna, Firmware: "7.1"}, health.Token{Model: luna, Firmware: "7.1"}), nc, "12.60"},
		{"tie: the newest (numerically)", fleetOf(health.Token{Model: nc, Firmware: "12.8"}, health.Token{Model: nc, Firmware: "12.60"}), nc, "12.60"},
		{"tie: parseable before unparseable", fleetOf(health.Token{Model: nc, Firmware: "beta"}, health.Token{Model: nc, Firmware: "1.0"}), nc, "1.0"},
		{"unknown firmware does not count", fleetOf(health.Token{Model: nc, Firmware: ""}, health.Token{Model: nc, Firmware: ""}, health.Token{Model: nc, Firmware: "2.6"}), nc, "2.6"},
		{"model padded as PKCS#11 pads it", fleetOf(health.Token{Model: "SoftHSM v2      ", Firmware: "2.6"}), "SoftHSM v2", "2.6"},
		{"no device of the model", fleetOf(health.Token{Model: luna, Firmware: "7.1"}), nc, ""},
		{"never reported", health.Poll{Devices: []health.Device{{Device: "x"}}}, nc, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FleetFirmware(tc.poll, tc.model); got != tc.want {
				t.Errorf("FleetFirmware = %q, want %q", got, tc.want)
			}
		})
	}
	if got := DeviceModel(fleetOf(health.Token{Model: "SoftHSM v2  "}), "a"); got != "SoftHSM v2" {
		t.Errorf("DeviceModel = %q", got)
	}
}

func TestRMARequest(t *testing.T) {
	inv := config.Device{Name: "pay-1", Site: config.Site{Address: "1 Vault Street, London", Contact: "Ops on call <ops@example.com>", Phone: "+44 20 7946 0001", Country: "GB"}}
	c := Case{ID: "c1", Device: "pay-1", Serial: "P1"}
	got := RMARequest(c, inv, "12.60")
	want := map[string]any{
		"requested_firmware": "12.60",
		"ship_to":            map[string]any{"address": "1 Vault Street, London", "contact": "Ops on call <ops@example.com>", "phone": "+44 20 7946 0001", "country": "GB"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RMARequest = %#v, want %#v", got, want)
	}

	got = RMARequest(c, config.Device{Name: "pay-1"}, "")
	wantMissing := []string{"devices[pay-1].site.address", "devices[pay-1].site.contact", "requested_firmware: no device of the model has reported its firmware"}
	if !reflect.DeepEqual(got[RequestMissing], wantMissing) {
		t.Errorf("missing = %#v, want %#v", got[RequestMissing], wantMissing)
	}
	if got[RequestFirmware] != "" || !reflect.DeepEqual(got[RequestShipTo], map[string]any{"address": "", "contact": ""}) {
		t.Errorf("RMARequest without site = %#v", got)
	}
}
