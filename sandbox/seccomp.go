package sandbox

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// checkSeccomp keeps the container's seccomp filter as containerd set it
// unless it is widened:
//   - seccomp listeners (linux.seccomp.listenerPath, a host socket) are not
//     known fields and never get here; SCMP_ACT_NOTIFY and the
//     NEW_LISTENER flag, which need one, are refused;
//   - on a backend sharing the host kernel the filter must deny by default
//     (default action errno, kill or trap), and a spec without one gets
//     containerd's default profile for its capabilities (Kubernetes sends
//     "Unconfined" unless kubelet runs with --seccomp-default, and the host
//     kernel is the one exposed). Which syscalls a deny-by-default filter
//     lets through is not judged: the capability rules (R25) gate the
//     dangerous ones;
//   - on such a backend the filter admits the host's native syscall ABI
//     only (narrowNativeArch), unless the node option
//     policy.allow_compat_syscalls keeps the 32-bit ones.
//
// It reports whether it installed the default profile.
func checkSeccomp(container string, spec *specs.Spec, cfg *Config) (bool, error) {
	if spec.Linux == nil || spec.Linux.Seccomp == nil {
		if cfg.Isolation.IsolatesKernel() || spec.Linux == nil {
			return false, nil
		}
		caps := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}
		if spec.Process != nil && spec.Process.Capabilities != nil {
			caps.Process.Capabilities = spec.Process.Capabilities
		}
		spec.Linux.Seccomp = seccomp.DefaultProfile(caps) // it reads only the bounding capabilities
		if !cfg.AllowCompatSyscalls {
			narrowNativeArch(spec.Linux.Seccomp)
		}
		return true, nil
	}
	sc := spec.Linux.Seccomp
	for _, f := range sc.Flags {
		switch f {
		case specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv, "SECCOMP_FILTER_FLAG_TSYNC":
		default:
			return false, &PolicyError{Container: container, Field: "linux.seccomp.flags", Value: clip(string(f)),
				Allowed: "SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW, SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, SECCOMP_FILTER_FLAG_TSYNC"}
		}
	}
	actions := []specs.LinuxSeccompAction{sc.DefaultAction}
	for _, s := range sc.Syscalls {
		actions = append(actions, s.Action)
	}
	for _, a := range actions {
		switch a {
		case specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap, specs.ActErrno,
			specs.ActTrace, specs.ActAllow, specs.ActLog:
		default:
			return false, &PolicyError{Container: container, Field: "linux.seccomp action", Value: clip(string(a)),
				Allowed: "SCMP_ACT_KILL*, SCMP_ACT_TRAP, SCMP_ACT_ERRNO, SCMP_ACT_TRACE, SCMP_ACT_ALLOW, SCMP_ACT_LOG (no user-space notifier)"}
		}
	}
	if !cfg.Isolation.IsolatesKernel() {
		switch sc.DefaultAction {
		case specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap, specs.ActErrno:
		default:
			return false, &PolicyError{Container: container, Field: "linux.seccomp.defaultAction", Value: string(sc.DefaultAction),
				Reason:  "a filter that allows by default, on a backend that shares the host kernel",
				Allowed: "SCMP_ACT_ERRNO, SCMP_ACT_KILL*, SCMP_ACT_TRAP (or no seccomp section: the runtime's default profile)"}
		}
		if !cfg.AllowCompatSyscalls {
			narrowNativeArch(sc)
		}
	}
	return false, nil
}

// nativeArch is the seccomp architecture of the host's own syscall ABI.
var nativeArch = map[string]specs.Arch{
	"amd64":   specs.ArchX86_64,
	"arm64":   specs.ArchAARCH64,
	"ppc64le": specs.ArchPPC64LE,
	"s390x":   specs.ArchS390X,
	"riscv64": specs.ArchRISCV64,
}[runtime.GOARCH]

// narrowNativeArch makes a deny-by-default filter admit the native syscall
// ABI only: containerd's profiles also list the 32-bit ones (x86 and x32
// on amd64, arm on arm64), whose compat entry points are kernel surface a
// pod rarely needs (gVisor offers none of them). A syscall through another
// ABI then hits libseccomp's bad-architecture action, which kills the
// process with SIGSYS. It only removes architectures, so it never widens
// the filter; and each one removed is a filter the runtime no longer
// compiles at every container start (runc: about 13 ms of 20).
func narrowNativeArch(sc *specs.LinuxSeccomp) {
	if nativeArch == "" {
		return
	}
	sc.Architectures = []specs.Arch{nativeArch}
}

// unifiedKeys are the cgroup v2 files a spec may write through
// linux.resources.unified: what kubelet writes (memory.oom.group, and
// memory.min/low/high under MemoryQoS), bounded by the container's memory
// limit. Any other file (io.max, memory.max, cgroup.*) could clear the
// rootfs throttle or raise a limit, and is refused.
var unifiedKeys = []string{"memory.oom.group", "memory.min", "memory.low", "memory.high"}

// checkResources applies what is left of linux.resources after R5 wrote
// the container's limits: unified keys, and real-time CPU bandwidth (host
// CPU time outside the pod's quota) on a backend sharing the host kernel.
func checkResources(container string, spec *specs.Spec, cfg *Config) error {
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return nil
	}
	res := spec.Linux.Resources
	if c := res.CPU; c != nil && c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 && !cfg.Isolation.IsolatesKernel() {
		return &PolicyError{Container: container, Field: "linux.resources.cpu.realtimeRuntime", Value: strconv.FormatInt(*c.RealtimeRuntime, 10),
			Reason: "real-time CPU time on a backend that shares the host kernel", Allowed: "0"}
	}
	var limit int64 = -1
	if res.Memory != nil && res.Memory.Limit != nil && *res.Memory.Limit > 0 {
		limit = *res.Memory.Limit
	}
	keys := make([]string, 0, len(res.Unified))
	for k := range res.Unified {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := strings.TrimSpace(res.Unified[k])
		bad := func(allowed string) error {
			return &PolicyError{Container: container, Field: "linux.resources.unified", Value: clip(k + "=" + v), Allowed: allowed}
		}
		switch k {
		case "memory.oom.group":
			if v != "0" && v != "1" {
				return bad("memory.oom.group 0 or 1")
			}
		case "memory.min", "memory.low", "memory.high":
			if k == "memory.high" && v == "max" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 || limit < 0 || n > limit {
				return bad(fmt.Sprintf("%s in bytes, at most the container's memory limit", k))
			}
		default:
			return bad(strings.Join(unifiedKeys, ", "))
		}
	}
	return nil
}
