package sandbox

import (
	"github.com/cci-shim/cci-shim/sandbox/refusal"
)

// PolicyError is a tenant-facing refusal: it names the offending field, the
// value found and what the platform allows (package refusal, shared with the
// backend adapters).
type PolicyError = refusal.Error
