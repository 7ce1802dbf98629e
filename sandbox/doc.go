// Package sandbox is the pod model and the platform policy the shim applies
// to every container spec on Create, and to every exec process, before the
// backend sees them.
//
// # Contract
//
// The shim reads the spec strictly (DecodeSpec), the pod from its
// annotations (PodFromSpec, then sets Pod.ID to the Create request's id) and
// calls Apply(spec, pod, cfg), which checks the whole spec against one
// allow-list and rewrites it in place, returning a Plan: the host work
// (replacement volumes, the /dev/shm tmpfs, bind sources to pin), the pod
// size, and the pod's state to persist. Prepare and PinSources do the host
// work; Cleanup, UnpinSources undo it. For an exec process the shim calls
// DecodeProcess and CheckExec. Apply is pure apart from two small
// interfaces the shim fills with the real thing (Config.Namespaces, a
// NamespaceResolver; Config.HostFS); Prepare, PinSources, ProcResolver,
// ReadNamespaces, CheckArch (R6) and ReadOOMScoreAdjFloor are the Linux I/O
// edge. It is not the Task service, does not talk to containerd or a
// backend, and writes no backend annotations (the adapters in
// sandbox/backend do, from Plan.PodSize, after the policy; so do the GPU
// and throttle steps).
//
// # The allow-list (R24)
//
// Every field of the spec that is set must be known (fields.go); each is
// known-safe, rewritten by the shim, or refused with a *PolicyError naming
// the field, the value and what is allowed:
//   - annotations: io.kubernetes.*, cci.io/*, *.cci.io/*, cdi.k8s.io/*
//     (apply.go);
//   - root.path: "rootfs", the snapshot in the bundle (apply.go);
//   - mounts by type and destination, bind sources of this pod's own
//     kubelet and CRI directories pinned, hostPath replaced or refused (R4),
//     /dev/shm the pod's tmpfs (R10); masked and read-only paths always
//     contain the defaults (mounts.go, platform.go, hostpath.go);
//   - devices and device-cgroup rules: the OCI defaults only (devices.go);
//   - namespaces: new, or this pod's own by inode (namespaces.go);
//   - cgroupsPath: under the pod's parent, decided once (cgroups.go);
//   - capabilities, rlimits, scheduling, AppArmor/SELinux, personality
//     (process.go) and seccomp, unified cgroup files (seccomp.go);
//   - sysctls (R9, sysctl.go); hooks and everything not listed are refused.
//
// Host paths are never built from tenant strings: only from validated
// identifiers (containerd ids, CRI's 64-hex ids, kubelet's pod UIDs) and
// hashes (ids.go).
//
// # Trust
//
// CRI's identity annotations (io.kubernetes.cri.sandbox-id, -uid, ...)
// are trusted to recognise kubelet's and CRI's directories, kubelet's pod
// cgroups and CNI network namespaces only in CRI's containerd namespace
// (Config.CRINamespace, k8s.io): whoever can create containers there can
// already stop every pod of the node through containerd's API. In any other
// namespace a container gets new namespaces, a shim-chosen cgroup and no
// host bind mount but R4 replacements. An app container must carry the
// identity its sandbox recorded (PodState).
//
// # Isolation (R25)
//
// Config.Isolation comes from the backend's Traits. On a backend that
// shares the host kernel (runc) the capabilities of HostRootCapabilities,
// real-time scheduling and allow-by-default seccomp are refused, a spec
// without seccomp gets containerd's default profile, and every filter
// admits the native syscall ABI only (the node option
// policy.allow_compat_syscalls keeps the 32-bit ones); the node option
// policy.insecure_allow_host_root_capabilities lets the capabilities
// through for development, with a warning in Plan.Warnings.
//
// # Annotations
//
// The platform's annotations (set by cci-webhook, or by hand with ctr):
//   - coordinator.cci.io/hostpath-replacement: JSON list of {"name",
//     "policyType", "localDir": {"sizeLimit"}, "emptyDir": {"sizeLimit",
//     "medium"}} (R4);
//   - coordinator.cci.io/hostpath-volumes: optional JSON object
//     {"<volume name>": "<hostPath.path>"} so entries match by volume name;
//   - resources.cci.io/containers: JSON list of {"name", "init", "sidecar",
//     "requests", "limits"} describing the pod (R5; it describes, it never
//     sets a limit: see crisize.go);
//   - shm.cci.io/size: /dev/shm size, a quantity such as "128Mi" (R10).
//
// # Pod size (R5)
//
// CRI's limits are the truth (crisize.go): the pod is normalised at sandbox
// creation from containerd's io.kubernetes.cri.sandbox-cpu-quota/-period,
// -shares and -memory annotations (kubelet's pod aggregate), with the
// breakdown of resources.cci.io/containers when it matches CRI's values;
// each container later gets its normalised limits, every container a limit.
// See NormalisePodSize for the rules.
package sandbox
