package sandbox

import (
	"slices"

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

// hostNamespaces refuses a spec without its own network, PID or IPC
// namespace: a missing entry means the host's (R3). Namespace paths are
// checked by inode in checkNamespaces.
func hostNamespaces(container string, spec *specs.Spec) error {
	var nss []specs.LinuxNamespace
	if spec.Linux != nil {
		nss = spec.Linux.Namespaces
	}
	for _, t := range []specs.LinuxNamespaceType{specs.NetworkNamespace, specs.PIDNamespace, specs.IPCNamespace} {
		if !slices.ContainsFunc(nss, func(n specs.LinuxNamespace) bool { return n.Type == t }) {
			return &PolicyError{Container: container, Field: "linux.namespaces." + string(t), Value: "host",
				Reason: "host " + string(t) + " namespace", Allowed: "a pod-private " + string(t) + " namespace"}
		}
	}
	return nil
}

// CheckRefusals applies R3: privileged containers and host network, PID
// and IPC namespaces are refused. Capabilities such as CAP_SYS_ADMIN stay
// allowed here (R25 refuses them on a backend sharing the host kernel).
func CheckRefusals(container string, spec *specs.Spec) error {
	if r := PrivilegedReason(spec); r != "" {
		return &PolicyError{Container: container, Field: "privileged", Value: "true", Reason: r,
			Allowed: "unprivileged containers with fine-grained capabilities (e.g. CAP_SYS_ADMIN)"}
	}
	return hostNamespaces(container, spec)
}
