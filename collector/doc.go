// Package collector polls every PKCS#11 module of the inventory through its
// probe worker (package probe), classifies the health of each inventory
// device, keeps the last snapshot and a bounded history per device, and
// serves Prometheus metrics from that snapshot.
//
// Devices are matched by serial number only, never by slot ID or label.
// Classify (pure) gives each device one of the States:
//
//	healthy       every check passed
//	degraded      a check slower than slow_threshold (hardware), or the user
//	              PIN retry counter low or on its final try (operational)
//	failed        a check returned an error such as CKR_DEVICE_ERROR or the
//	              token reports error_state (hardware); the user PIN is locked
//	              or was refused (operational)
//	missing       the serial is not among the module's tokens (hardware)
//	unresponsive  the token was in flight when the probe deadline hit; a hang
//	              before the serial was known makes every unreported device
//	              of that module unresponsive, since we cannot tell (hardware)
//	module_error  the library could not load or initialise, or the worker
//	              crashed, before the device reported (operational)
//
// Initialised tokens whose serial is not in the inventory are listed per
// module as unexpected (a replacement unit, perhaps).
//
// Concurrency: each module has its own prober and, under Run, its own
// schedule. A snapshot is immutable and published atomically after each
// module poll; Snapshot, Ready and the metrics (Describe/Collect) read it
// without a lock and never wait on a probe.
//
// Metrics and devices not polled yet: before its module's first poll a
// device exports only hsm_contract_expiry_timestamp_seconds (from the
// inventory); hsm_up and hsm_device_state appear with the first result, so
// "no data yet" never reads as "down". /-/ready (Collector.Ready) covers
// the start-up gap.
package collector
