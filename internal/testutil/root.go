// Package testutil holds helpers shared by the tests of several packages.
// It is imported from _test.go files only.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips t when not running as root, saying why (what), except
// under CI=true, where a test that cannot run is a failure.
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root (%s), and CI=true makes a test that cannot run a failure", what)
	}
	t.Skipf("needs root (%s); CI runs it as root", what)
}

// Unavailable skips t because something it needs is missing, except under
// CI=true, where a test that cannot run is a failure.
func Unavailable(t skipper, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true makes a test that cannot run a failure)", args...)
	}
	t.Skipf(format+" (set CI=true to make this a failure)", args...)
}

// skipper is the part of testing.TB Unavailable uses (test envs pass their
// own TB).
type skipper interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}
