package rma

// CheckSLANow runs the SLA tick (due dates, breaches, escalations,
// reminders) at once and waits for it.
func (e *Engine) CheckSLANow() { e.run(e.checkSLA) }
