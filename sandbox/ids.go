package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/containerd/containerd/v2/pkg/identifiers"

	"github.com/cci-shim/cci-shim/internal/lazyre"
)

// Host paths are never built from tenant strings (R24). Pods and containers
// appear in host paths only through identifiers validated here: containerd
// identifiers (what containerd itself accepts as a container, sandbox or
// namespace name, safe as a path component), CRI's 64-hex ids, and
// kubelet's pod UIDs. Names (pod name, namespace, container name) appear
// only inside records, or through HashKey.

var (
	reHexID   = lazyre.New(`^[0-9a-f]{64}$`)
	reUUID    = lazyre.New(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	reStatic  = lazyre.New(`^[0-9a-f]{32}$`)
	maxRecord = 253 // longest pod name, namespace or container name kept in a record
)

// ValidateIdentifier checks a containerd identifier (container id, sandbox
// id, containerd namespace): alphanumerics separated by single '.', '_' or
// '-', at most 76 characters. Such a value is safe as one path component.
// field names it in the error.
func ValidateIdentifier(field, value string) error {
	if err := identifiers.Validate(value); err != nil {
		return &PolicyError{Field: field, Value: clip(value), Reason: "not a containerd identifier",
			Allowed: "letters and digits separated by single '.', '_' or '-', at most 76 characters"}
	}
	return nil
}

// IsCRIID reports whether s has the form of the ids containerd's CRI
// generates for sandboxes and containers: 64 lowercase hex digits.
func IsCRIID(s string) bool { return reHexID.MatchString(s) }

// ValidPodUID reports whether uid is a kubelet pod UID: an RFC 4122 UUID as
// the API server assigns (lowercase), or the 32 hex digits kubelet derives
// for a static pod from its manifest.
func ValidPodUID(uid string) bool { return reUUID.MatchString(uid) || reStatic.MatchString(uid) }

// HashKey derives a path-safe key from strings a tenant may choose (names).
// Equal inputs give equal keys; the key reveals nothing about the input's
// form, so no input can make it a path.
func HashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// clip bounds a tenant value quoted in an error or record.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// validRecordName reports whether a name may be kept in a record: not
// empty, at most 253 bytes, no NUL or newline.
func validRecordName(s string) bool {
	return s != "" && len(s) <= maxRecord && !strings.ContainsAny(s, "\x00\n\r")
}
