// Package rma turns confirmed device faults into support cases: it confirms
// faults (level 1), derives their kind and severity from the support model,
// keeps exactly one case per fault, routes case events to desks through the
// durable outbox and holds the case model shared by the store, the desks and
// the bundles.
//
// The engine (Engine) is split by job, one file each:
//
//	engine.go       options, queue, Run loop, reload, metrics
//	policy.go       Policy: what the engine takes from the configuration (PolicyFrom)
//	ingest.go       poll -> faults (fault.go, module.go) -> tracker -> record; rechecks
//	record.go       the case lifecycle of a confirmed or cleared fault: open, recur, reopen, clear
//	route.go        which desks get which event (outbox rows), by role and contract
//	severity.go     the severity policy
//	paging.go       severity-1 pages
//	contracts.go    contract status and the contract cases
//	actions.go      operator actions (close, cancel, approve the bundle, note)
//	steps.go        flow events (Engine.Step, Step): the one path of the CLI, the API, the agent
//	autoclose.go    cleared cases closing (flow none) or cancelled (not confirmed) by themselves
//	bundlefollow.go bundles owed to desks, retried
//	sla.go          the SLA tick: vendor due dates of open cases (Case.Due)
//	escalate.go     breaches, escalations, reminders, the 30-day raise
//
// What is wrong with a device is decided once, by the collector (its
// findings, package collector/health); rma maps findings to faults and
// never reads PKCS#11 checks or flags. Hardware return flows and SLA
// clocks get their own files next to these (flows.go, clocks.go).
package rma
