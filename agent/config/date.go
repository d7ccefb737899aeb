package config

import "time"

// Date is a calendar day (YYYY-MM-DD) such as a contract expiry.
type Date struct{ time.Time }
