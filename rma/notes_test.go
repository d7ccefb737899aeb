package rma_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hsm-agent/hsm-agent/agent/config"
	"github.com/hsm-agent/hsm-agent/rma"
)

func TestEngineFirmwareEndOfLife(t *testing.T) {
	t.Parallel()
	cfg := testConfig("pay-1")
	cfg.Firmware.EndOfLife = []string{"2.6.0"} // the devices run 2.6
	h := newHarness(t, cfg)
	h.confirm(nil)
	c := h.only("P1/firmware/end_of_life")
	if c.Severity != 3 || c.Kind != rma.KindFirmware || !strings.Contains(c.Summary, "end of life") {
		t.Errorf("case %+v", c)
	}
	equal(t, "rows", h.rows(c.ID), []string{"vendor:case.opened", "ops:case.opened"})
}

func TestEngineStandardTierProductionNoteOnce(t *testing.T) {
	t.Parallel()
	cfg := testConfig("pay-1", "dev-1")
	std := inventory["dev-1"]
	std.Name, std.Serial, std.Environment = "std-1", "S1", config.EnvProduction
	cfg.Devices = append(cfg.Devices, std)
	h := newHarness(t, cfg)
	c := h.only("S1/contract/standard_tier")
	if c.Severity != 4 || c.Kind != rma.KindContract || !strings.Contains(c.Description, "15 business days") {
		t.Errorf("case %+v", c)
	}
	equal(t, "rows", h.rows(c.ID), []string{"ops:case.opened"})
	for _, cs := range h.cases() {
		if cs.Fault == rma.ClassStandardTier && cs.Serial != "S1" {
			t.Errorf("note for %s (not production, or not standard)", cs.Device)
		}
	}
	h.restart()
	h.e.CheckContractsNow()
	equal(t, "events after a restart", h.events(c.ID), []string{rma.EventOpened})
	if _, err := h.e.CloseCase(context.Background(), c.ID, rma.Action{}); err != nil {
		t.Fatal(err)
	}
	h.restart()
	h.e.CheckContractsNow()
	c = h.only("S1/contract/standard_tier")
	if c.State != rma.StateClosed {
		t.Errorf("the closed note came back: %+v", c)
	}
}
