package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/containerd/errdefs"
)

// PodState is what the shim records about a pod when its sandbox (or
// standalone container) is created, and hands back in Config.Pod for every
// later container: the pod's identity, its namespaces by inode, its cgroup
// parent, its normalised size (R5) and the kubelet/containerd roots its
// mounts showed. Apply returns it in Plan.State whenever it is created or
// changes; the shim persists it as JSON (Marshal, UnmarshalPodState) with
// the pod's other state, so that it survives a shim restart.
type PodState struct {
	Version  int         `json:"version"`
	Identity PodIdentity `json:"identity"`
	// Namespaces are the sandbox's (Owner "") and, for kubectl debug
	// --target, pod containers' pid namespaces. The shim records them with
	// RecordNamespaces once the task exists (ReadNamespaces reads them).
	Namespaces []NSRef `json:"namespaces,omitempty"`
	// SandboxPid is the sandbox task's pid as the backend reported it. In a
	// VM (Kata) namespace paths are the guest's business: an app container
	// may name /proc/<SandboxPid>/ns/<type> to share the sandbox's, and
	// nothing else (see checkNamespacePath).
	SandboxPid   uint32  `json:"sandboxPid,omitempty"`
	CgroupParent string  `json:"cgroupParent"`
	Size         PodSize `json:"size"`
	// SizeSource says where the size came from (for logs and errors).
	SizeSource string `json:"sizeSource"`
	// CRI is the pod's aggregate as CRI delivered it (kubelet's pod limits).
	CRI CRIResources `json:"cri"`
	// Described is the verified container breakdown from
	// resources.cci.io/containers, by name; nil when the pod has none, and
	// then containers are sized from their own CRI limits (see crisize.go).
	Described []ContainerResources `json:"described,omitempty"`
	// IncrementHolder is the container that holds the pod's R5 increment
	// when there is no breakdown; released when it exits.
	IncrementHolder string        `json:"incrementHolder,omitempty"`
	Roots           ObservedRoots `json:"roots"`
}

// PodIdentity is the pod as CRI named it when the sandbox was created.
// Names are kept here only, never in a path.
type PodIdentity struct {
	Namespace    string `json:"namespace"` // containerd namespace
	SandboxID    string `json:"sandboxId"`
	Standalone   bool   `json:"standalone,omitempty"`
	Name         string `json:"name,omitempty"`
	PodNamespace string `json:"podNamespace,omitempty"`
	UID          string `json:"uid,omitempty"`
}

const podStateVersion = 1

// PodStateFile is the name the shim gives the persisted state in its pod
// directory (<state_dir>/<namespace>/<pod id>/), where LoadPodStates finds
// it.
const PodStateFile = "pod-state.json"

// LoadPodStates reads the persisted state of every pod on the node from the
// shim's state dir, for cci-agent (RootMismatches). Unreadable or
// malformed files are skipped: a pod being created or torn down.
func LoadPodStates(stateDir string) []*PodState {
	paths, _ := filepath.Glob(filepath.Join(stateDir, "*", "*", PodStateFile))
	var out []*PodState
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if st, err := UnmarshalPodState(data); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// Marshal encodes the state for the shim to persist.
func (s *PodState) Marshal() ([]byte, error) { return json.Marshal(s) }

// UnmarshalPodState decodes a persisted state.
func UnmarshalPodState(data []byte) (*PodState, error) {
	var s PodState
	if err := decodeStrict(data, &s); err != nil {
		return nil, fmt.Errorf("decoding pod state: %w", err)
	}
	if s.Version != podStateVersion {
		return nil, fmt.Errorf("pod state version %d, want %d: %w", s.Version, podStateVersion, errdefs.ErrFailedPrecondition)
	}
	return &s, nil
}

// RecordNamespaces adds namespaces of the pod: the sandbox's (owner "")
// after its task was created, or a container's (owner its id; only its pid
// namespace is joinable) after its own.
func (s *PodState) RecordNamespaces(owner string, refs []NSRef) {
	for _, r := range refs {
		r.Owner = owner
		if !slices.ContainsFunc(s.Namespaces, func(x NSRef) bool { return x.same(r) && x.Owner == owner }) {
			s.Namespaces = append(s.Namespaces, r)
		}
	}
}

// ForgetContainer drops what the state holds for a deleted container: its
// namespaces and, if it held the pod's increment, the increment (the next
// container created takes it). It reports whether the state changed. The
// shim calls it when a container's init process exits: kubelet runs init
// containers to completion before it creates app containers, so the
// increment ends on the first long-running one.
func (s *PodState) ForgetContainer(id string) bool {
	changed := false
	if s.IncrementHolder == id && id != "" {
		s.IncrementHolder, changed = "", true
	}
	n := len(s.Namespaces)
	s.Namespaces = slices.DeleteFunc(s.Namespaces, func(r NSRef) bool { return r.Owner == id && id != "" })
	return changed || n != len(s.Namespaces)
}

func (s *PodState) hasSandboxNamespaces() bool {
	return slices.ContainsFunc(s.Namespaces, func(r NSRef) bool { return r.Owner == "" })
}

func (s *PodState) clone() *PodState {
	c := *s
	c.Namespaces = slices.Clone(s.Namespaces)
	c.Described = slices.Clone(s.Described)
	c.Size.Containers = slices.Clone(s.Size.Containers)
	return &c
}

// checkJoin verifies that an app container belongs to the pod whose state
// the shim passed: a CRI container carries the identity its sandbox
// recorded (sandbox id, pod name, namespace and UID, containerd namespace).
// Its namespaces are checked by inode in checkNamespaces.
func checkJoin(pod *Pod, cfg *Config) error {
	st := cfg.Pod
	if st == nil {
		return fmt.Errorf("container %q of pod %q: the pod's state is not known: %w", pod.Name(), pod.SandboxID, errdefs.ErrFailedPrecondition)
	}
	id := st.Identity
	got := PodIdentity{Namespace: cfg.Namespace, SandboxID: pod.SandboxID, Name: pod.SandboxName, PodNamespace: pod.Namespace, UID: pod.UID}
	if id.Standalone || got != (PodIdentity{Namespace: id.Namespace, SandboxID: id.SandboxID, Name: id.Name, PodNamespace: id.PodNamespace, UID: id.UID}) {
		return &PolicyError{Container: pod.Name(), Field: "annotation " + AnnotationSandboxID, Value: clip(pod.SandboxID),
			Reason:  "the container's pod identity differs from the one its sandbox recorded",
			Allowed: "the sandbox id, pod name, namespace and UID that containerd's CRI set for the pod's sandbox"}
	}
	return nil
}
