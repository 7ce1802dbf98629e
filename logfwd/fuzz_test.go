package logfwd

import (
	"strings"
	"testing"
)

// FuzzParsePolicies: the parser never panics, and whatever it accepts is
// valid: absolute clean paths outside the forbidden locations, with a
// host directory beneath the root.
func FuzzParsePolicies(f *testing.F) {
	f.Add(`[{"container":"app","paths":["/var/log/app/*.log"]}]`)
	f.Fuzz(func(t *testing.T, in string) {
		ps, err := ParsePolicies(in)
		if err != nil {
			return
		}
		for _, p := range ps {
			if err := p.Validate(); err != nil {
				t.Fatalf("accepted policy fails Validate: %v", err)
			}
		}
		for _, w := range Watches(ps) {
			if !strings.HasPrefix(w.Dir, "/") || w.Dir == "/proc" || strings.HasPrefix(w.Dir, "/proc/") ||
				w.Dir == "/sys" || strings.HasPrefix(w.Dir, "/sys/") || w.Dir == "/dev" || strings.HasPrefix(w.Dir, "/dev/") {
				t.Fatalf("accepted dir %q", w.Dir)
			}
			for _, c := range strings.Split(w.Dir[1:], "/") {
				if c == ".." || c == "." {
					t.Fatalf("accepted dir %q", w.Dir)
				}
			}
			hd := HostDir("/r", w.Container, w.Dir)
			if !strings.HasPrefix(hd, "/r/") || strings.Contains(hd, "/../") {
				t.Fatalf("host dir %q", hd)
			}
		}
	})
}
