package sandbox

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// privilegedCaps are capabilities that no ordinary workload holds together.
// CRI's privileged mode grants every capability the host knows (at least
// these, present since Linux 3.x) and clears masked and read-only paths; a
// securityContext that adds "ALL" keeps the masked paths and stays allowed.
var privilegedCaps = []string{
	"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_BOOT",
	"CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE",
	"CAP_NET_ADMIN", "CAP_SYSLOG", "CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE",
	"CAP_IPC_LOCK", "CAP_SYS_RESOURCE", "CAP_MKNOD", "CAP_AUDIT_CONTROL",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND",
}

// PrivilegedReason returns why spec looks privileged, or "" when it does not.
// A spec is privileged when any of these holds (each is what CRI's and
// ctr's privileged mode produce, and none is reachable through an ordinary
// securityContext):
//   - the bounding set holds every capability of privilegedCaps AND
//     linux.maskedPaths and linux.readonlyPaths are both empty;
//   - /sys is mounted sysfs without "ro";
//   - the device cgroup allows all devices (allow, no type or "a", no major/minor).
func PrivilegedReason(spec *specs.Spec) string {
	if spec.Process != nil && spec.Process.Capabilities != nil && spec.Linux != nil &&
		len(spec.Linux.MaskedPaths) == 0 && len(spec.Linux.ReadonlyPaths) == 0 {
		bounding := spec.Process.Capabilities.Bounding
		all := true
		for _, c := range privilegedCaps {
			if !slices.Contains(bounding, c) {
				all = false
				break
			}
		}
		if all {
			return "all capabilities with no masked or read-only paths"
		}
	}
	for _, m := range spec.Mounts {
		if m.Type == "sysfs" && !slices.Contains(m.Options, "ro") {
			return "/sys mounted read-write"
		}
	}
	if spec.Linux != nil && spec.Linux.Resources != nil {
		for _, d := range spec.Linux.Resources.Devices {
			if d.Allow && (d.Type == "" || d.Type == "a") && d.Major == nil && d.Minor == nil {
				return "access to all devices"
			}
		}
	}
	return ""
}

// hostNSPath matches namespace paths that name the host's own namespaces.
// CRI app containers join their sandbox with /proc/<pause pid>/ns/<type> and
// the sandbox joins a CNI netns under /var/run/netns: those are not host.
var hostNSPath = regexp.MustCompile(`^/proc/(1|self|thread-self)/(task/[0-9]+/)?ns/`)

// checkNamespaces refuses host network, PID and IPC namespaces: a missing
// entry in linux.namespaces, or an entry whose path is /proc/1/ns/...,
// /proc/self/ns/... or /proc/thread-self/ns/....
func checkNamespaces(container string, spec *specs.Spec) error {
	var nss []specs.LinuxNamespace
	if spec.Linux != nil {
		nss = spec.Linux.Namespaces
	}
	for _, t := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.PIDNamespace, specs.IPCNamespace} {
		i := slices.IndexFunc(nss, func(n specs.LinuxNamespace) bool { return n.Type == t })
		field := "linux.namespaces." + string(t)
		switch {
		case i < 0:
			return &PolicyError{Container: container, Field: field, Value: "host",
				Reason: "host " + string(t) + " namespace", Allowed: "a pod-private " + string(t) + " namespace"}
		case hostNSPath.MatchString(filepath.Clean(strings.TrimSpace(nss[i].Path))):
			return &PolicyError{Container: container, Field: field, Value: nss[i].Path,
				Reason: "host " + string(t) + " namespace", Allowed: "a pod-private " + string(t) + " namespace"}
		}
	}
	return nil
}

// CheckRefusals applies R3: privileged containers and host network, PID
// and IPC namespaces are refused. Capabilities such as CAP_SYS_ADMIN stay
// allowed.
func CheckRefusals(container string, spec *specs.Spec) error {
	if r := PrivilegedReason(spec); r != "" {
		return &PolicyError{Container: container, Field: "privileged", Value: "true", Reason: r,
			Allowed: "unprivileged containers with fine-grained capabilities (e.g. CAP_SYS_ADMIN)"}
	}
	return checkNamespaces(container, spec)
}
