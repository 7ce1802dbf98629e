// Package sandbox is the pod model and the platform policy the shim applies
// to every container spec on Create, before the backend sees it.
//
// It reads the pod from the OCI spec (PodFromSpec), validates and rewrites
// the spec (Apply: R3 refusals, R4 hostPath replacement, R5 pod size, R9
// sysctls, R10 /dev/shm, oomScoreAdj) and returns a Plan of host work that
// Prepare performs and Cleanup undoes. Apply is pure apart from one statfs
// through Config.HostFS; Prepare, Cleanup, CheckArch (R6) and
// ReadOOMScoreAdjFloor are the Linux I/O edge. It is not the Task service,
// does not talk to containerd or a backend, and does not write Kata
// annotations (the lead's adapters do, from Plan.PodSize). The backend
// adapters live in sandbox/backend.
//
// # Annotations
//
// CRI sets io.kubernetes.cri.{container-type,sandbox-id,sandbox-name,
// sandbox-namespace,sandbox-uid,container-name} on every spec, and
// sandbox-cpu-quota/-period/-memory on the sandbox spec. Pod annotations
// reach specs only when the runtime's containerd config lists them:
//
//	[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.cci]
//	  runtime_type = "io.containerd.cci.v2"
//	  pod_annotations = ["*.cci.io/*"]
//
// The platform's annotations (set by the coordinator, or by hand with ctr):
//   - coordinator.cci.io/hostpath-replacement: JSON list of {"name",
//     "policyType", "localDir": {"sizeLimit"}, "emptyDir": {"sizeLimit",
//     "medium"}} (R4).
//   - coordinator.cci.io/hostpath-volumes: optional JSON object
//     {"<volume name>": "<hostPath.path>"} so entries match by volume name.
//   - resources.cci.io/containers: JSON list of {"name", "init",
//     "requests": {"cpu", "memory"}, "limits": {...}} of the whole pod (R5).
//   - shm.cci.io/size: /dev/shm size, a quantity such as "128Mi" (R10).
//
// # Privileged (R3)
//
// An OCI spec carries no "privileged" flag. A spec is refused as privileged
// when it has every capability of a fixed set (CAP_SYS_ADMIN, CAP_SYS_MODULE,
// CAP_SYS_RAWIO, ... see privilegedCaps) AND empty maskedPaths and
// readonlyPaths (what CRI and ctr privileged produce; capabilities: ["ALL"]
// keeps the masked paths and stays allowed), or when /sys is a sysfs
// without "ro", or when the device cgroup allows all devices. Host network,
// PID and IPC namespaces are refused: no entry of that type in
// linux.namespaces, or a path /proc/{1,self,thread-self}/ns/... . CRI app
// containers join their sandbox through /proc/<pause pid>/ns/... and the
// sandbox joins a CNI netns under /var/run/netns: both are allowed.
//
// # hostPath (R4)
//
// A mount is a host bind when its type is "bind" or its options hold
// bind/rbind; kernel filesystems (proc, sysfs, tmpfs, devpts, mqueue,
// cgroup) are not. Binds from these sources are the platform's own and kept:
//   - <KubeletRoot>/pods/<sandbox-uid>/ (volumes/kubernetes.io~empty-dir,
//     ~configmap, ~secret, ~projected, ~downward-api, ~csi, volume-subpaths,
//     etc-hosts, containers/<name>/<id> termination-log) — this pod only;
//   - <ContainerdRoot>/io.containerd.grpc.v1.cri/sandboxes/<sandbox-id>/
//     (hosts, hostname, resolv.conf) and the same under ContainerdState
//     (shm), and <ContainerdRoot>/io.containerd.grpc.v1.cri/image-volumes/;
//   - Config.PodDir; and any mount at /dev/shm (see below).
//
// Every other bind is a hostPath. An OCI mount carries no volume name, so an
// entry matches when its name is a volume of hostpath-volumes whose path is
// the source or contains it (subPath), else when its name is the last
// element of the source path, else the "*" entry; otherwise the spec is
// refused. remove drops the mount; the replace policies bind a pod-private
// <PodDir>/volumes/<key> instead, shared by the pod's containers: a tmpfs of
// sizeLimit (emptyDir medium Memory; default and maximum the pod memory) or
// a sparse ext4 image of sizeLimit loop-mounted (default 10 GiB).
//
// # /dev/shm (R10)
//
// Size: annotation shm.cci.io/size, else (app containers) statfs of a tmpfs
// emptyDir under .../kubernetes.io~empty-dir/ mounted at /dev/shm, else
// 64 MiB; never more than the pod memory. Every spec's /dev/shm becomes a
// bind of the host tmpfs <PodDir>/shm mounted with size=N: runc gets exactly
// N, and Kata sizes its guest tmpfs from statfs of that source (Kata reads
// it only from the sandbox spec, so Kata pods need the annotation for sizes
// other than 64 MiB). Nothing stops CAP_SYS_ADMIN from remounting it.
//
// # Pod size (R5)
//
// The shim sees one container per Create, sandbox first, so the pod's
// containers come from resources.cci.io/containers; without it the sandbox
// is sized from containerd's sandbox-cpu-*/sandbox-memory annotations, a
// standalone (ctr) container from its own linux.resources, and otherwise
// from Config.DefaultPodSize. See NormalisePodSize for the rules.
package sandbox
