package sandbox

import (
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Cgroups (R24): a container's linux.cgroupsPath is never the tenant's
// choice. It is set to <pod parent>/<container id> (cgroupfs) or
// <pod slice>:cri-containerd:<container id> (systemd), where the pod parent
// is decided once, at sandbox creation:
//   - a CRI sandbox in CRI's containerd namespace whose path is kubelet's
//     pod cgroup for this pod's UID plus the sandbox id keeps it: .../pod<uid>
//     (cgroupfs) or kubepods[-<qos>]-pod<uid with _>.slice (systemd);
//   - any other sandbox gets <CgroupRoot>/<namespace>/pod-<sandbox id>, and a
//     standalone container <CgroupRoot>/<namespace> (its cgroup is then
//     <CgroupRoot>/<namespace>/<id>).
//
// App containers are put under the recorded parent whatever their spec
// says. Namespace and ids are validated identifiers, so the result is a
// path only the pod can have: it can neither join another container's
// cgroup nor write limits above its own parent.

const criSystemdPrefix = "cri-containerd"

// cgroupsPath returns the path to write into spec and, for a sandbox, the
// pod parent to record. Preconditions: pod.ID, pod.SandboxID (CRI types)
// and cfg.Namespace are validated identifiers.
func cgroupsPath(spec *specs.Spec, pod *Pod, cfg *Config) (cgPath, parent string) {
	var have string
	if spec.Linux != nil {
		have = spec.Linux.CgroupsPath
	}
	switch pod.Type {
	case TypeStandalone:
		parent = path.Join(cfg.CgroupRoot, cfg.Namespace)
		return parent + "/" + pod.ID, parent
	case TypeSandbox:
		if cfg.trustCRI() {
			if p, ok := kubeletCgroupParent(have, pod); ok {
				return have, p
			}
		}
		parent = path.Join(cfg.CgroupRoot, cfg.Namespace, "pod-"+pod.SandboxID)
		return joinCgroup(parent, pod.ID), parent
	}
	return joinCgroup(cfg.Pod.CgroupParent, pod.ID), cfg.Pod.CgroupParent
}

// joinCgroup puts id under a recorded parent in the parent's form.
func joinCgroup(parent, id string) string {
	if strings.HasSuffix(parent, ".slice") {
		return parent + ":" + criSystemdPrefix + ":" + id
	}
	return parent + "/" + id
}

// kubeletCgroupParent recognises kubelet's pod cgroup for this pod in a CRI
// sandbox's cgroupsPath and returns the parent.
func kubeletCgroupParent(p string, pod *Pod) (string, bool) {
	if !ValidPodUID(pod.UID) || pod.ID == "" {
		return "", false
	}
	if slice, rest, ok := strings.Cut(p, ":"); ok { // systemd driver
		want := "-pod" + strings.ReplaceAll(pod.UID, "-", "_") + ".slice"
		if rest != criSystemdPrefix+":"+pod.ID || !strings.HasPrefix(slice, "kubepods") ||
			!strings.HasSuffix(slice, want) || strings.ContainsAny(slice, "/\x00") {
			return "", false
		}
		return slice, true
	}
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return "", false
	}
	parent, leaf := path.Split(p)
	parent = strings.TrimSuffix(parent, "/")
	if leaf != pod.ID || path.Base(parent) != "pod"+pod.UID || parent == "/" {
		return "", false
	}
	return parent, true
}
