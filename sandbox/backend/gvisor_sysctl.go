package backend

import (
	"sort"
	"strconv"
	"strings"

	"github.com/cci-shim/cci-shim/sandbox/refusal"
)

// gvisorSysctl says which values of one sysctl hold inside a gVisor sandbox.
type gvisorSysctl struct {
	// since is the first runsc release that honours it; 0: every release.
	since runscVersion
	// holds reports whether the sandbox gives the pod this value.
	holds func(value string) bool
	// allowed describes the values that hold, for errors.
	allowed string
}

// gvisorSysctls are the pod sysctls that hold inside a gVisor sandbox.
// runsc ignores linux.sysctl without a word except for the keys it reads;
// gVisor's kernel keeps its own values for the rest of what R9 allows
// (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, most of net.*), so the
// adapter refuses those instead of letting them be dropped. Checked against
// runsc 20221219 (Debian) and gVisor's sources of 2026-08.
//
// containerd's CRI sets the first two on every pod sandbox (its
// enable_unprivileged_ports and enable_unprivileged_icmp defaults): gVisor
// already behaves that way, so those values hold.
var gvisorSysctls = map[string]gvisorSysctl{
	// gVisor checks no capability when a socket binds a port: every port
	// is unprivileged.
	"net.ipv4.ip_unprivileged_port_start": {holds: func(v string) bool { return strings.TrimSpace(v) == "0" }, allowed: "0"},
	// gVisor lets every process open ICMP echo (ping) sockets.
	"net.ipv4.ping_group_range": {holds: allGroups, allowed: "0 2147483647 (every group)"},
	// runsc reads it from the sandbox's spec since 20250317.
	"net.ipv6.conf.all.disable_ipv6": {since: 20250317, holds: func(v string) bool { return v == "0" || v == "1" }, allowed: "0 or 1"},
}

func allGroups(v string) bool {
	f := strings.Fields(v)
	return len(f) == 2 && f[0] == "0" && f[1] == "2147483647"
}

// checkGVisorSysctls refuses, in name order, the first sysctl that would not
// hold in a sandbox of runsc release v. The R9 allow-list has already
// passed them.
func checkGVisorSysctls(sysctls map[string]string, v runscVersion) error {
	names := make([]string, 0, len(sysctls))
	for n := range sysctls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if s, ok := gvisorSysctls[n]; ok && v >= s.since && s.holds(sysctls[n]) {
			continue
		}
		return &refusal.Error{Field: "linux.sysctl", Value: n + "=" + sysctls[n],
			Reason:  "the gvisor backend cannot apply it: gVisor's user-space kernel keeps its own value, and runsc ignores the pod's",
			Allowed: "on gvisor (runsc " + strconv.Itoa(int(v)) + "): " + gvisorSysctlsAllowed(v)}
	}
	return nil
}

// gvisorSysctlsAllowed lists what holds under runsc release v, for errors.
func gvisorSysctlsAllowed(v runscVersion) string {
	var ok []string
	for n, s := range gvisorSysctls {
		if v >= s.since {
			ok = append(ok, n+" = "+s.allowed)
		}
	}
	sort.Strings(ok)
	return strings.Join(ok, "; ")
}
