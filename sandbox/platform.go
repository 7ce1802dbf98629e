package sandbox

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/cci-shim/cci-shim/internal/lazyre"
)

// Platform bind sources: what kubelet and containerd's CRI mount into a
// pod's containers from their own directories. They are recognised from
// what the shim knows for certain — the pod UID and sandbox id that CRI
// passes (validated, and trusted only in CRI's containerd namespace) and the
// container's own id — so a node whose kubelet or containerd uses another
// root works without policy.*_root:
//
//	<kubelet root>/pods/<this pod's UID>/{volumes,volume-subpaths,etc-hosts,containers,plugins}/...
//	<containerd root|state>/io.containerd.grpc.v1.cri/sandboxes/<this sandbox id>/...   (hosts, hostname, resolv.conf, shm)
//	<containerd root|state>/io.containerd.grpc.v1.cri/image-volumes/<this sandbox id>/... (CRI image volumes)
//	<containerd root|state>/io.containerd.grpc.v1.cri/containers/<this container id>/volumes/... (image VOLUMEs)
//
// The root in front is taken from the source when it is not the configured
// one, so a hostile spec could try to forge it (a hostPath laid out like a
// pod directory). Closed by: the UID and ids must be this pod's own (a UUID
// or 64-hex id the tenant learns only after its pod spec is fixed); an
// inferred root must be a clean absolute path outside /proc, /sys, /dev and
// the shim's own directories, with no "pods" or CRI element of its own (so
// it is not inside another pod's volume), the same for every container of
// the pod; and at mount time (Pin) the root is opened with
// RESOLVE_NO_SYMLINKS from "/", the pod's own directory under it must be a
// root-owned directory nobody else can write, and the source is opened
// beneath it without following any symlink and mounted through that fd.
// The configured roots stay an allow-list of their own (their path may
// contain symlinks the operator made).

const criDir = "io.containerd.grpc.v1.cri"

// kubeletPodSubdirs are the entries of kubelet's pod directory a container
// may mount from.
var kubeletPodSubdirs = []string{"volumes", "volume-subpaths", "etc-hosts", "containers", "plugins"}

// kataVolumeKinds are kubelet volume plugin directories whose name Kata
// Containers reads from a mount source (ephemeral emptyDirs, watched
// configmaps and secrets); a pinned source keeps it in its staging path.
var kataVolumeKinds = []string{"kubernetes.io~empty-dir", "kubernetes.io~configmap", "kubernetes.io~secret",
	"kubernetes.io~projected", "kubernetes.io~downward-api"}

var reVolumePlugin = lazyre.New(`^[a-z0-9][a-z0-9.-]*~[a-z0-9][a-z0-9.-]*$`)

// platformSource is a recognised platform bind source.
type platformSource struct {
	Kind    string // "kubelet", "cri" (containerd root) or "cri-state"
	Root    string // kubelet root, or containerd root or state
	Trusted bool   // Root is the configured one
	Anchor  string // the pod's (or container's) own directory, relative to Root
	Rel     string // the source relative to Root
	// VolumeKind is the kubelet volume plugin dir (kataVolumeKinds) or "".
	VolumeKind string
}

// matchPlatform recognises src (clean, absolute) as a platform source of
// this pod and container. reason says why a source that looks like one is
// not; "" when it does not look like one at all.
func matchPlatform(src string, pod *Pod, cfg *Config) (ps platformSource, ok bool, reason string) {
	if !cfg.trustCRI() {
		return ps, false, ""
	}
	if ps, ok, reason = matchKubelet(src, pod, cfg); ok || reason != "" {
		return ps, ok, reason
	}
	return matchCRI(src, pod, cfg)
}

func matchKubelet(src string, pod *Pod, cfg *Config) (platformSource, bool, string) {
	if !ValidPodUID(pod.UID) {
		return platformSource{}, false, ""
	}
	marker := "/pods/" + pod.UID + "/"
	i := strings.Index(src+"/", marker)
	if i < 0 {
		return platformSource{}, false, ""
	}
	root := src[:i]
	if root == "" {
		root = "/"
	}
	rel := src[i+1:]
	parts := strings.Split(rel, "/") // pods, uid, subdir, ...
	if len(parts) < 3 || !slices.Contains(kubeletPodSubdirs, parts[2]) {
		return platformSource{}, false, "not in a kubelet pod directory entry (" + strings.Join(kubeletPodSubdirs, ", ") + ")"
	}
	ps := platformSource{Kind: "kubelet", Root: root, Anchor: "pods/" + pod.UID, Rel: rel}
	if parts[2] == "volumes" {
		if len(parts) < 5 || !reVolumePlugin.MatchString(parts[3]) {
			return platformSource{}, false, "not a kubelet volume directory"
		}
		if slices.Contains(kataVolumeKinds, parts[3]) && len(parts) == 5 {
			ps.VolumeKind = parts[3]
		}
	}
	if root == filepath.Clean(cfg.KubeletRoot) {
		ps.Trusted = true
		return ps, true, ""
	}
	if r := inferredRootProblem(root, cfg, "pods"); r != "" {
		return platformSource{}, false, r
	}
	return ps, true, ""
}

func matchCRI(src string, pod *Pod, cfg *Config) (platformSource, bool, string) {
	marker := "/" + criDir + "/"
	i := strings.Index(src, marker)
	if i < 0 {
		return platformSource{}, false, ""
	}
	root := src[:i]
	if root == "" {
		root = "/"
	}
	rel := src[i+1:]
	parts := strings.Split(rel, "/") // criDir, sub, id, ...
	if len(parts) < 4 {
		return platformSource{}, false, "not a file of this pod's CRI sandbox"
	}
	var own string
	switch parts[1] {
	case "sandboxes", "image-volumes":
		own = pod.SandboxID
	case "containers":
		own = pod.ID
		if len(parts) < 5 || parts[3] != "volumes" {
			return platformSource{}, false, "not an image volume of this container"
		}
	default:
		return platformSource{}, false, "not a file of this pod's CRI sandbox"
	}
	if own == "" || parts[2] != own {
		return platformSource{}, false, "belongs to another CRI sandbox or container"
	}
	ps := platformSource{Kind: "cri", Root: root, Anchor: strings.Join(parts[:3], "/"), Rel: rel}
	if parts[1] == "image-volumes" {
		ps.Kind = "cri-state" // CRI keeps image volumes under its state dir, the rest under its root
	}
	for _, r := range []string{cfg.ContainerdRoot, cfg.ContainerdState} {
		if root == filepath.Clean(r) {
			ps.Trusted = true
			return ps, true, ""
		}
	}
	if r := inferredRootProblem(root, cfg, criDir); r != "" {
		return platformSource{}, false, r
	}
	return ps, true, ""
}

// inferredRootProblem says why root, taken from a bind source, cannot be a
// kubelet or containerd root; "" when it can.
func inferredRootProblem(root string, cfg *Config, element string) string {
	if root == "/" || !filepath.IsAbs(root) || filepath.Clean(root) != root {
		return "the directory in front of it is not a clean absolute path"
	}
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if root == d || under(root, d) {
			return "the directory in front of it is under " + d
		}
	}
	for _, d := range append([]string{cfg.PodDir}, cfg.ShimDirs...) {
		if d != "" && (root == filepath.Clean(d) || under(root, filepath.Clean(d))) {
			return "the directory in front of it holds the shim's own state"
		}
	}
	for _, e := range strings.Split(root, "/") {
		if e == element || e == "pods" || e == criDir {
			return "the directory in front of it is inside another pod's directory"
		}
	}
	return ""
}

// ObservedRoots are the kubelet and containerd roots a pod's mounts showed.
type ObservedRoots struct {
	Kubelet         string `json:"kubelet,omitempty"`
	Containerd      string `json:"containerd,omitempty"`      // CRI's sandbox files and image VOLUMEs
	ContainerdState string `json:"containerdState,omitempty"` // CRI's image volumes
}

// RootMismatch is a configured root that disagrees with what pods show.
type RootMismatch struct {
	Key        string // node config key, e.g. "policy.kubelet_root"
	Configured string
	Observed   string
	Pods       int // how many pods showed Observed
}

// RootMismatches compares the configured roots with those the given pods'
// states recorded (cci-agent check reports them: with a wrong configured
// root the node still works, from inferred roots, but the operator should
// know).
func RootMismatches(kubeletRoot, containerdRoot, containerdState string, states []*PodState) []RootMismatch {
	count := map[[2]string]int{}
	for _, st := range states {
		if st == nil {
			continue
		}
		if k := st.Roots.Kubelet; k != "" && k != filepath.Clean(kubeletRoot) {
			count[[2]string{"policy.kubelet_root", k}]++
		}
		if c := st.Roots.Containerd; c != "" && c != filepath.Clean(containerdRoot) {
			count[[2]string{"policy.containerd_root", c}]++
		}
		if c := st.Roots.ContainerdState; c != "" && c != filepath.Clean(containerdState) {
			count[[2]string{"policy.containerd_state", c}]++
		}
	}
	var out []RootMismatch
	for k, n := range count {
		conf := map[string]string{"policy.kubelet_root": kubeletRoot, "policy.containerd_root": containerdRoot,
			"policy.containerd_state": containerdState}[k[0]]
		out = append(out, RootMismatch{Key: k[0], Configured: conf, Observed: k[1], Pods: n})
	}
	slices.SortFunc(out, func(a, b RootMismatch) int { return strings.Compare(a.Key+a.Observed, b.Key+b.Observed) })
	return out
}
