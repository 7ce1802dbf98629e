// Package lazyre holds regular expressions that are compiled on their first
// use rather than at package init.
//
// Every shim process pays for the init of every package linked into it, and
// containerd runs the shim binary more than once per pod (the start
// subcommand, then the daemon). A bounded repetition such as
// [a-z0-9-]{0,61} compiles into one instruction per possible repeat, so the
// identifiers' expressions cost more at init than all the rest of our
// packages together, mostly in processes that never match them.
package lazyre

import (
	"regexp"
	"sync"
)

// Regexp is a regular expression compiled by its first match. An invalid
// expression panics there, as regexp.MustCompile would at init; every
// expression is matched by its package's tests.
type Regexp struct {
	expr string
	re   func() *regexp.Regexp
}

// New returns expr, to be compiled by its first use.
func New(expr string) *Regexp {
	return &Regexp{expr: expr, re: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })}
}

// MatchString reports whether s contains a match of the expression.
func (r *Regexp) MatchString(s string) bool { return r.re().MatchString(s) }

// FindStringSubmatch is regexp.Regexp's FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.re().FindStringSubmatch(s) }

// String returns the expression's source text.
func (r *Regexp) String() string { return r.expr }
