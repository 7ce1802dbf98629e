package sandbox

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/internal/lazyre"
)

// knownCaps are the Linux capabilities (capability.h, up to Linux 6.x).
// A name outside this list (a typo, "ALL", a future capability) is refused:
// containerd resolves "ALL" before the spec is written.
var knownCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// HostRootCapabilities are the capabilities that, on a backend sharing the
// host kernel (runc), act on the host rather than on the container's own
// namespaces (R25). Each one is a known escape or a host-wide effect:
//   - CAP_SYS_ADMIN: mount, cgroupfs, namespaces, and dozens of ioctls; a
//     container mounted the host devices cgroup with it (issue 9, item 13).
//   - CAP_SYS_MODULE: loads kernel code.
//   - CAP_SYS_RAWIO: iopl/ioperm, /dev/mem, raw SCSI commands.
//   - CAP_SYS_PTRACE: ptrace and process_vm_* of processes entering the
//     container (runc exec), the classic runtime overwrite.
//   - CAP_SYS_BOOT: kexec_load replaces the host kernel (the container is in
//     the initial user namespace).
//   - CAP_DAC_READ_SEARCH: open_by_handle_at opens any file of a mounted
//     filesystem by handle, outside the container's mounts ("shocker").
//   - CAP_BPF, CAP_PERFMON: eBPF programs and perf events on the host kernel:
//     kernel memory reads and a large attack surface.
//   - CAP_SYS_TIME: sets the host clock (there is no clock namespace for it).
//   - CAP_MAC_ADMIN, CAP_MAC_OVERRIDE: change or bypass the host's LSM policy.
//   - CAP_AUDIT_CONTROL, CAP_AUDIT_READ: the host's audit rules and stream.
//   - CAP_SYSLOG: the host kernel log and kernel addresses.
//   - CAP_SYS_PACCT: switches host-wide process accounting to a file.
//   - CAP_SYS_NICE: real-time scheduling classes are not bounded by the pod's
//     CFS quota and starve host CPUs.
//
// CAP_MKNOD stays allowed (containerd grants it by default): the device
// cgroup allow-list (devices.go) keeps device nodes to the default set, so
// it reaches no host device. CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_RESOURCE,
// CAP_IPC_LOCK act on the pod's own namespaces or on resources charged to
// its cgroup. Under Kata and gVisor every capability acts on the sandbox's
// kernel and R3 stands as written.
var HostRootCapabilities = []string{
	"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_BOOT",
	"CAP_DAC_READ_SEARCH", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_TIME", "CAP_MAC_ADMIN",
	"CAP_MAC_OVERRIDE", "CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_SYSLOG", "CAP_SYS_PACCT",
	"CAP_SYS_NICE",
}

// InsecureCapsOption names the node option that lets host-root capabilities
// through on a non-isolating backend.
const InsecureCapsOption = "policy.insecure_allow_host_root_capabilities"

func capSets(c *specs.LinuxCapabilities) map[string][]string {
	if c == nil {
		return nil
	}
	return map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted,
		"inheritable": c.Inheritable, "ambient": c.Ambient}
}

// checkCapabilities refuses unknown capability names and, on a backend that
// does not isolate the host kernel, the host-root ones (unless the node
// allows them; then it returns a warning to log).
func checkCapabilities(container string, p *specs.Process, cfg *Config) (warning string, err error) {
	if p == nil || p.Capabilities == nil {
		return "", nil
	}
	var hostRoot []string
	for _, set := range []string{"bounding", "effective", "permitted", "inheritable", "ambient"} {
		for _, c := range capSets(p.Capabilities)[set] {
			if !slices.Contains(knownCaps, c) {
				return "", &PolicyError{Container: container, Field: "process.capabilities." + set, Value: clip(c),
					Allowed: "Linux capability names such as CAP_NET_BIND_SERVICE"}
			}
			if slices.Contains(HostRootCapabilities, c) && !slices.Contains(hostRoot, c) {
				hostRoot = append(hostRoot, c)
			}
		}
	}
	if len(hostRoot) == 0 || cfg.Isolation.IsolatesKernel() {
		return "", nil
	}
	if cfg.AllowHostRootCapabilities {
		return fmt.Sprintf("INSECURE: container %q runs with host-root capabilities %s on a backend that shares the host kernel, because %s = true; never set it on a node that runs tenants",
			container, strings.Join(hostRoot, ", "), InsecureCapsOption), nil
	}
	return "", &PolicyError{Container: container, Field: "process.capabilities", Value: strings.Join(hostRoot, ", "),
		Reason:  "this node's backend runs containers on the host kernel (isolation " + isolationName(cfg) + ", e.g. runc), where these capabilities are host root",
		Allowed: "capabilities other than " + strings.Join(HostRootCapabilities, ", ") + " (a sandboxed backend allows them)"}
}

func isolationName(cfg *Config) string {
	if cfg.Isolation == "" {
		return "none"
	}
	return string(cfg.Isolation)
}

var knownRlimits = []string{
	"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
	"RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
	"RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
}

// maxNoFile is the kernel's default fs.nr_open: no process may go above it.
const maxNoFile = 1 << 20

// checkRlimits: rlimits are per process and charged nowhere else, so any
// value is the container's own business except these widenings: an unknown
// type, soft above hard, RLIMIT_NOFILE above the kernel's nr_open default,
// and, on a backend sharing the host kernel, RLIMIT_RTPRIO above 0 (real-time
// priority without CAP_SYS_NICE, which starves host CPUs). Each type at most
// once.
func checkRlimits(container string, p *specs.Process, cfg *Config) error {
	if p == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, r := range p.Rlimits {
		bad := func(reason, allowed string) error {
			return &PolicyError{Container: container, Field: "process.rlimits", Value: fmt.Sprintf("%s soft %d hard %d", clip(r.Type), r.Soft, r.Hard),
				Reason: reason, Allowed: allowed}
		}
		switch {
		case !slices.Contains(knownRlimits, r.Type):
			return bad("unknown type", "RLIMIT_* types of setrlimit(2)")
		case seen[r.Type]:
			return bad("listed twice", "each type once")
		case r.Soft > r.Hard:
			return bad("soft above hard", "soft at most hard")
		case r.Type == "RLIMIT_NOFILE" && r.Hard > maxNoFile:
			return bad("above the kernel's nr_open", fmt.Sprintf("at most %d", maxNoFile))
		case r.Type == "RLIMIT_RTPRIO" && r.Hard > 0 && !cfg.Isolation.IsolatesKernel():
			return bad("real-time priority on a backend that shares the host kernel", "0")
		}
		seen[r.Type] = true
	}
	return nil
}

// checkScheduling refuses, on a backend sharing the host kernel, the
// real-time CPU and I/O classes: they are not bounded by the pod's cgroup
// limits. Unknown policies and classes are refused everywhere.
func checkScheduling(container string, p *specs.Process, cfg *Config) error {
	if p == nil {
		return nil
	}
	if s := p.Scheduler; s != nil {
		switch s.Policy {
		case specs.SchedOther, specs.SchedBatch, specs.SchedIdle:
		case specs.SchedFIFO, specs.SchedRR, specs.SchedDeadline:
			if !cfg.Isolation.IsolatesKernel() {
				return &PolicyError{Container: container, Field: "process.scheduler.policy", Value: string(s.Policy),
					Reason: "real-time scheduling on a backend that shares the host kernel", Allowed: "SCHED_OTHER, SCHED_BATCH, SCHED_IDLE"}
			}
		default:
			return &PolicyError{Container: container, Field: "process.scheduler.policy", Value: clip(string(s.Policy)),
				Allowed: "SCHED_OTHER, SCHED_BATCH, SCHED_IDLE (and real-time policies on a sandboxed backend)"}
		}
	}
	if io := p.IOPriority; io != nil {
		switch io.Class {
		case specs.IOPRIO_CLASS_BE, specs.IOPRIO_CLASS_IDLE:
		case specs.IOPRIO_CLASS_RT:
			if !cfg.Isolation.IsolatesKernel() {
				return &PolicyError{Container: container, Field: "process.ioPriority.class", Value: string(io.Class),
					Reason: "real-time I/O on a backend that shares the host kernel", Allowed: "IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE"}
			}
		default:
			return &PolicyError{Container: container, Field: "process.ioPriority.class", Value: clip(string(io.Class)),
				Allowed: "IOPRIO_CLASS_BE, IOPRIO_CLASS_IDLE"}
		}
	}
	return nil
}

// SELinux types a container may run as or label its mounts with: the
// container policy's own. spc_t ("super privileged container"),
// unconfined_t and every host daemon type are refused.
var (
	selinuxProcessTypes = []string{"container_t", "container_init_t", "container_kvm_t", "svirt_lxc_net_t"}
	selinuxFileTypes    = []string{"container_file_t", "svirt_sandbox_file_t"}
	reSELinuxLabel      = lazyre.New(`^[a-z0-9_]+:[a-z0-9_]+:([a-z0-9_]+)(:[A-Za-z0-9_.,:-]+)?$`)
)

// checkLSM: what containerd set for AppArmor and SELinux stays unless it is
// widened. Widened means: AppArmor "unconfined" spelled out on a backend
// sharing the host kernel (an empty profile cannot be told from a host
// without AppArmor and stays allowed), or an SELinux label whose type is
// not one of the container types. Profiles are names of profiles the
// operator loaded; a tenant cannot bring its own.
func checkLSM(container string, spec *specs.Spec, cfg *Config) error {
	if p := spec.Process; p != nil {
		if p.ApparmorProfile == "unconfined" && !cfg.Isolation.IsolatesKernel() {
			return &PolicyError{Container: container, Field: "process.apparmorProfile", Value: p.ApparmorProfile,
				Allowed: "the runtime's default profile or a profile the node loaded"}
		}
		if err := checkSELinux(container, "process.selinuxLabel", p.SelinuxLabel, selinuxProcessTypes); err != nil {
			return err
		}
	}
	if spec.Linux != nil {
		return checkSELinux(container, "linux.mountLabel", spec.Linux.MountLabel, selinuxFileTypes)
	}
	return nil
}

func checkSELinux(container, field, label string, types []string) error {
	if label == "" {
		return nil
	}
	m := reSELinuxLabel.FindStringSubmatch(label)
	if m == nil || !slices.Contains(types, m[1]) {
		return &PolicyError{Container: container, Field: field, Value: clip(label),
			Allowed: "a label of type " + strings.Join(types, " or ")}
	}
	return nil
}

// checkPersonality allows the two Linux execution domains without flags.
func checkPersonality(container string, spec *specs.Spec) error {
	if spec.Linux == nil || spec.Linux.Personality == nil {
		return nil
	}
	p := spec.Linux.Personality
	if (p.Domain != specs.PerLinux && p.Domain != specs.PerLinux32) || len(p.Flags) > 0 {
		return &PolicyError{Container: container, Field: "linux.personality", Value: string(p.Domain),
			Allowed: "LINUX or LINUX32 without flags"}
	}
	return nil
}
