package zendesk

// Priority maps a case severity to the Zendesk ticket priority (the table
// in the package doc); anything outside 1-4 is "normal".
func Priority(severity int) string {
	switch severity {
	case 1:
		return "urgent"
	case 2:
		return "high"
	case 4:
		return "low"
	default:
		return "normal"
	}
}
