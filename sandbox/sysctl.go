package sandbox

import (
	"sort"
	"strings"
)

// AllowedSysctls describes the R9 allow-list in tenant-facing errors.
const AllowedSysctls = "kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.* except net.netfilter.* and net.ipv4.vs.*"

// SysctlAllowed reports whether name is in the R9 allow-list. Names must be
// in dot form, made of non-empty components of [A-Za-z0-9_-]: a "/" or an
// empty component could make a runtime write outside the allowed subtree
// (runc turns dots into slashes), so such names are refused; this also
// refuses slash-form names of VLAN interfaces (eth0.100), a documented gap.
func SysctlAllowed(name string) bool {
	if !validSysctlName(name) {
		return false
	}
	switch {
	case name == "kernel.sem":
		return true
	case strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"):
		return true
	case strings.HasPrefix(name, "fs.mqueue."):
		return true
	case strings.HasPrefix(name, "net."):
		return !underTree(name, "net.netfilter") && !underTree(name, "net.ipv4.vs")
	}
	return false
}

func underTree(name, tree string) bool {
	return name == tree || strings.HasPrefix(name, tree+".")
}

func validSysctlName(name string) bool {
	if name == "" || len(name) > 256 {
		return false
	}
	for _, comp := range strings.Split(name, ".") {
		if comp == "" {
			return false
		}
		for _, r := range comp {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
			if !ok {
				return false
			}
		}
	}
	return true
}

// ValidateSysctls checks every sysctl (OCI linux.sysctl) against R9 and
// returns a *PolicyError for the first refused one in name order.
func ValidateSysctls(container string, sysctls map[string]string) error {
	names := make([]string, 0, len(sysctls))
	for n := range sysctls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !SysctlAllowed(n) {
			return &PolicyError{Container: container, Field: "sysctl", Value: n, Allowed: AllowedSysctls}
		}
	}
	return nil
}
