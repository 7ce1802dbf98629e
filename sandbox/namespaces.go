package sandbox

import (
	"fmt"
	"github.com/cci-shim/cci-shim/sandbox/backend"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// NSRef identifies a namespace by the device and inode of its nsfs file,
// which is what the kernel compares; a path's text proves nothing
// (/proc/2/ns/net is the host's network namespace as much as
// /proc/1/ns/net is).
type NSRef struct {
	Type specs.LinuxNamespaceType `json:"type"`
	Dev  uint64                   `json:"dev"`
	Ino  uint64                   `json:"ino"`
	// Owner is the container whose namespace it is ("" for the sandbox);
	// only in PodState.
	Owner string `json:"owner,omitempty"`
}

func (r NSRef) same(o NSRef) bool { return r.Type == o.Type && r.Dev == o.Dev && r.Ino == o.Ino }

// NamespaceResolver tells which namespace a path names. The real one
// (ProcResolver, Linux) opens the path and asks the kernel; tests use a map.
type NamespaceResolver interface {
	Resolve(path string) (NSRef, error)
}

// podNamespaceTypes are the namespaces a container may have, each new or
// joined. User and time namespaces are refused: their ID mappings and
// clock offsets are host-side settings a tenant must not choose.
var podNamespaceTypes = []specs.LinuxNamespaceType{
	specs.PIDNamespace, specs.NetworkNamespace, specs.IPCNamespace,
	specs.UTSNamespace, specs.MountNamespace, specs.CgroupNamespace,
}

// requiredNamespaces must be present: a missing entry means the host's.
var requiredNamespaces = []specs.LinuxNamespaceType{
	specs.NetworkNamespace, specs.PIDNamespace, specs.IPCNamespace,
	specs.UTSNamespace, specs.MountNamespace,
}

// checkNamespaces applies the namespace rules (R3, R24). Every namespace
// is new, or one of this pod's own, verified by inode:
//   - a sandbox (CRI pause container, or a standalone container) gets new
//     namespaces, except that a CRI sandbox in CRI's containerd namespace
//     may join a pre-created network namespace (CNI's netns file, not under
//     /proc) that is not the host's; it is returned, to be recorded;
//   - an app container may join only namespaces the pod's state recorded
//     (the sandbox's, or a pod container's pid namespace for
//     kubectl debug --target), never a mount namespace.
func checkNamespaces(container string, spec *specs.Spec, pod *Pod, cfg *Config) ([]NSRef, error) {
	var nss []specs.LinuxNamespace
	if spec.Linux != nil {
		nss = spec.Linux.Namespaces
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range nss {
		if !slices.Contains(podNamespaceTypes, ns.Type) {
			return nil, &PolicyError{Container: container, Field: "linux.namespaces", Value: string(ns.Type),
				Allowed: "pid, network, ipc, uts, mount and cgroup namespaces (user and time namespaces are not supported)"}
		}
		if seen[ns.Type] {
			return nil, &PolicyError{Container: container, Field: "linux.namespaces", Value: string(ns.Type),
				Reason: "listed twice", Allowed: "one entry per namespace type"}
		}
		seen[ns.Type] = true
	}
	for _, t := range requiredNamespaces {
		if !seen[t] {
			return nil, &PolicyError{Container: container, Field: "linux.namespaces." + string(t), Value: "host",
				Reason: "host " + string(t) + " namespace", Allowed: "a pod-private " + string(t) + " namespace"}
		}
	}
	var joined []NSRef
	for _, ns := range nss {
		if ns.Path == "" {
			continue
		}
		ref, err := checkNamespacePath(container, ns, pod, cfg)
		if err != nil {
			return nil, err
		}
		if pod.IsSandbox() {
			joined = append(joined, ref)
		}
	}
	return joined, nil
}

func checkNamespacePath(container string, ns specs.LinuxNamespace, pod *Pod, cfg *Config) (NSRef, error) {
	field := "linux.namespaces." + string(ns.Type)
	refuse := func(reason string) error {
		return &PolicyError{Container: container, Field: field, Value: clip(ns.Path), Reason: reason,
			Allowed: "a new " + string(ns.Type) + " namespace, or one of this pod's own"}
	}
	p := ns.Path
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
		return NSRef{}, refuse("not a clean absolute path")
	}
	switch {
	case pod.IsSandbox() && !(pod.Type == TypeSandbox && ns.Type == specs.NetworkNamespace && cfg.trustCRI()):
		return NSRef{}, refuse("a pod's sandbox starts in new namespaces")
	case pod.IsSandbox() && under(p, "/proc"):
		return NSRef{}, refuse("a sandbox joins only a pre-created network namespace file")
	case !pod.IsSandbox() && ns.Type == specs.MountNamespace:
		return NSRef{}, refuse("a container gets a mount namespace of its own")
	}
	if !pod.IsSandbox() && cfg.Isolation == backend.IsolationVM {
		// The guest agent interprets the path: it only says "share the
		// sandbox's namespace". The host inode of the VMM means nothing.
		if st := cfg.Pod; st != nil && st.SandboxPid > 0 && p == fmt.Sprintf("/proc/%d/ns/%s", st.SandboxPid, procNSName(ns.Type)) {
			return NSRef{Type: ns.Type}, nil
		}
		return NSRef{}, refuse("in a VM a container may only name its sandbox's namespaces")
	}
	if cfg.Namespaces == nil {
		return NSRef{}, &PolicyError{Container: container, Field: field, Value: clip(p), Reason: "the shim cannot verify namespace paths",
			Allowed: "new namespaces", Kind: errdefs.ErrFailedPrecondition}
	}
	ref, err := cfg.Namespaces.Resolve(p)
	if err != nil {
		return NSRef{}, refuse(fmt.Sprintf("not a namespace: %v", err))
	}
	if ref.Type != ns.Type {
		return NSRef{}, refuse("a " + string(ref.Type) + " namespace, not " + string(ns.Type))
	}
	for _, h := range cfg.HostNamespaces {
		if ref.same(h) {
			return NSRef{}, &PolicyError{Container: container, Field: field, Value: clip(p),
				Reason: "host " + string(ns.Type) + " namespace", Allowed: "a pod-private " + string(ns.Type) + " namespace"}
		}
	}
	if pod.IsSandbox() {
		return ref, nil
	}
	st := cfg.Pod
	if st == nil || !st.hasSandboxNamespaces() {
		return NSRef{}, &PolicyError{Container: container, Field: field, Value: clip(p),
			Reason: "the pod's sandbox namespaces are not recorded", Allowed: "new namespaces",
			Kind: errdefs.ErrFailedPrecondition}
	}
	for _, own := range st.Namespaces {
		if ref.same(own) && (own.Owner == "" || ns.Type == specs.PIDNamespace) {
			return ref, nil
		}
	}
	return NSRef{}, refuse("not a namespace of this pod's sandbox")
}

// procNSName is the file name of a namespace type under /proc/<pid>/ns.
func procNSName(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.NetworkNamespace:
		return "net"
	case specs.MountNamespace:
		return "mnt"
	}
	return string(t)
}
