package collector

import "github.com/hsm-agent/hsm-agent/agent/config"

// FollowSerial makes the collector poll an inventory device under serial
// from now on, in place of its configured serial: the case engine adopted a
// replacement unit (issue 10 section 5). The device's metrics, status and
// findings follow the new serial; its history is kept. The old serial, if it
// shows up again, is a token not in the inventory. A reload that changes
// the device's configured serial drops the followed one (the operator
// registered a unit himself). Unknown devices are ignored.
func (c *Collector) FollowSerial(device, serial string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := c.devices[device]
	if ds == nil || serial == "" {
		c.logger.Warn("follow serial: no such inventory device; ignored", "device", device, "serial", serial)
		return
	}
	if ds.dev.Serial == serial {
		return
	}
	if c.follow == nil {
		c.follow = map[string]string{}
	}
	c.follow[device] = serial
	c.logger.Info("device follows a new serial (replacement unit)", "device", device, "previous", ds.dev.Serial, "serial", serial)
	c.installLocked(c.cfg)
	c.storeLocked(nil)
}

// followedLocked returns d with its followed serial, if any. A followed
// serial is dropped when the configuration now gives the device another
// serial than before (ds, the device's state under the previous
// configuration; nil at start).
func (c *Collector) followedLocked(d config.Device, ds *deviceState) config.Device {
	s, ok := c.follow[d.Name]
	if !ok {
		return d
	}
	if ds != nil && ds.cfgSerial != "" && ds.cfgSerial != d.Serial {
		delete(c.follow, d.Name)
		c.logger.Info("the configuration gives the device a new serial: the followed serial is dropped",
			"device", d.Name, "serial", d.Serial, "followed", s)
		return d
	}
	d.Serial = s
	return d
}

// cfgSerialOf is the serial the configuration gives a device.
func cfgSerialOf(cfg *config.Config, name string) string {
	if d, ok := cfg.Device(name); ok {
		return d.Serial
	}
	return ""
}
