package sandbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSysctlAllowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"kernel.shmmax", true}, {"kernel.shmall", true}, {"kernel.shm_rmid_forced", true},
		{"kernel.msgmax", true}, {"kernel.msg_next_id", true}, {"kernel.sem", true},
		{"fs.mqueue.msg_max", true}, {"net.core.somaxconn", true}, {"net.ipv4.ip_forward", true},
		{"net.ipv4.conf.all.rp_filter", true}, {"net.ipv6.conf.default.disable_ipv6", true},
		{"net.ipv4.vsx", true}, {"net.netfilterx", true},
		{"kernel.sem_next_id", false}, {"kernel.semx", false}, {"kernel.core_pattern", false},
		{"kernel.shm", true}, {"fs.mqueue", false}, {"fs.mqueue.", false}, {"fs.file-max", false},
		{"net", false}, {"net.", false}, {"vm.overcommit_memory", false},
		{"net.netfilter.nf_conntrack_max", false}, {"net.netfilter", false},
		{"net.ipv4.vs.conntrack", false}, {"net.ipv4.vs", false},
		{"net.ipv4/../../kernel/core_pattern", false}, {"net..ipv4", false}, {"net.ipv4.", false},
		{"net/ipv4/ip_forward", false}, {"NET.core.somaxconn", false}, {"", false},
		{"net.core.somaxconn ", false}, {"net.ipv4.conf.eth0/100.forwarding", false},
	} {
		if got := SysctlAllowed(tc.name); got != tc.want {
			t.Errorf("SysctlAllowed(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidateSysctls(t *testing.T) {
	if err := ValidateSysctls("app", map[string]string{"net.core.somaxconn": "1024", "kernel.sem": "1 2 3 4"}); err != nil {
		t.Fatalf("allowed sysctls refused: %v", err)
	}
	err := ValidateSysctls("app", map[string]string{"net.core.somaxconn": "1", "vm.swappiness": "1", "kernel.panic": "1"})
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Value != "kernel.panic" || !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("got %v, want a PolicyError for kernel.panic (first in name order)", err)
	}
	want := `container "app": sysctl "kernel.panic" is not allowed; allowed: ` + AllowedSysctls
	if err.Error() != want {
		t.Fatalf("message\n got %s\nwant %s", err, want)
	}
}

// allowedOracle restates R9 independently of SysctlAllowed.
func allowedOracle(n string) bool {
	parts := strings.Split(n, ".")
	for _, p := range parts {
		if p == "" || strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			return false
		}
	}
	switch {
	case parts[0] == "kernel" && len(parts) >= 2:
		return n == "kernel.sem" || strings.HasPrefix(parts[1], "shm") || strings.HasPrefix(parts[1], "msg")
	case parts[0] == "fs" && len(parts) >= 3:
		return parts[1] == "mqueue"
	case parts[0] == "net" && len(parts) >= 2:
		return parts[1] != "netfilter" && !(parts[1] == "ipv4" && len(parts) >= 3 && parts[2] == "vs")
	}
	return false
}

func FuzzSysctlAllowed(f *testing.F) {
	for _, s := range []string{"kernel.shmmax", "net.netfilter.x", "net.ipv4.vs.y", "fs.mqueue.msg_max", "kernel.sem"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := SysctlAllowed(name)
		if len(name) <= 256 && got != allowedOracle(name) {
			t.Fatalf("SysctlAllowed(%q) = %v, oracle says %v", name, got, !got)
		}
		if got && (strings.ContainsAny(name, "/ \n\x00") || strings.Contains(name, "..") ||
			strings.HasPrefix(name, "net.netfilter.") || strings.HasPrefix(name, "net.ipv4.vs.")) {
			t.Fatalf("accepted %q", name)
		}
		err := ValidateSysctls("c", map[string]string{name: "1"})
		if (err == nil) != got {
			t.Fatalf("ValidateSysctls disagrees for %q: %v", name, err)
		}
	})
}
