package backend

import (
	"sort"
	"strconv"
	"strings"

	"github.com/cci-shim/cci-shim/sandbox"
)

// gvisorSysctls are the pod sysctls runsc applies from the sandbox's OCI
// spec, with the runsc release that began to. gVisor's kernel has its own
// fixed values for the rest of what R9 allows (kernel.shm*, kernel.msg*,
// kernel.sem, fs.mqueue.*, net.*): runsc ignores them without a word, so
// the adapter refuses them instead (checked against runsc 20221219 and the
// 2026 sources: only net.ipv6.conf.all.disable_ipv6 is read, since
// 20250317).
var gvisorSysctls = map[string]runscVersion{
	"net.ipv6.conf.all.disable_ipv6": 20250317,
}

// checkGVisorSysctls refuses, in name order, the first sysctl this runsc
// would not apply. The R9 allow-list has already passed them.
func checkGVisorSysctls(sysctls map[string]string, v runscVersion) error {
	names := make([]string, 0, len(sysctls))
	for n := range sysctls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if since, ok := gvisorSysctls[n]; ok && v >= since {
			continue
		}
		return &sandbox.PolicyError{Field: "linux.sysctl", Value: n,
			Reason:  "the gvisor backend cannot apply it: gVisor's user-space kernel keeps its own value, and runsc ignores the pod's",
			Allowed: "on gvisor (runsc " + strconv.Itoa(int(v)) + "): " + gvisorSysctlsAllowed(v)}
	}
	return nil
}

// gvisorSysctlsAllowed lists what runsc release v applies, for errors.
func gvisorSysctlsAllowed(v runscVersion) string {
	var ok []string
	for n, since := range gvisorSysctls {
		if v >= since {
			ok = append(ok, n)
		}
	}
	if len(ok) == 0 {
		return "none"
	}
	sort.Strings(ok)
	return strings.Join(ok, ", ")
}
