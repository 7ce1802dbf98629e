package shim

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/sandbox"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// podPolicy is the pod's policy state (sandbox.PodState): recorded at the
// sandbox's Create, handed to the policy of every later container of the
// pod, and persisted in the pod's state dir for cci-agent's root check. It
// has its own lock: the event relay updates it on exits without waiting for
// a Create.
type podPolicy struct {
	file string

	mu sync.Mutex
	st *sandbox.PodState // guarded by mu; nil until the sandbox is created
}

func newPodPolicy(podDir string) *podPolicy {
	return &podPolicy{file: filepath.Join(podDir, sandbox.PodStateFile)}
}

// state returns the pod's state for the policy of an app container (which
// copies it before changing anything), or nil before the sandbox exists.
func (p *podPolicy) state() *sandbox.PodState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// commit takes the state a successful Create's policy returned: for the
// pod's first container, with the namespaces its init process (pid) has, so
// that later containers may join exactly those; for an app container with a
// pid namespace of its own, that namespace, so that a debug container may
// join it (kubectl debug --target, CRI's NamespaceMode_TARGET).
// In a VM (Kata) the pid is the VMM's and its host namespaces say nothing
// of the guest's: only the pid is recorded.
func (p *podPolicy) commit(a *admission, pid uint32, isolation backend.Isolation) error {
	st := a.plan.State
	var own []sandbox.NSRef
	switch {
	case a.pod.IsSandbox() && st != nil:
		st.SandboxPid = pid
		if isolation != backend.IsolationVM {
			refs, err := sandbox.ReadNamespaces(int(pid))
			if err != nil {
				return fmt.Errorf("reading the sandbox's namespaces: %w", err)
			}
			st.RecordNamespaces("", refs)
		}
	case !a.pod.IsSandbox() && isolation != backend.IsolationVM:
		refs, err := sandbox.ReadNamespaces(int(pid))
		if err != nil {
			return fmt.Errorf("reading the container's namespaces: %w", err)
		}
		own = slices.DeleteFunc(refs, func(r sandbox.NSRef) bool { return r.Type != specs.PIDNamespace })
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st != nil {
		p.st = st
	}
	if p.st == nil {
		return nil
	}
	own = slices.DeleteFunc(own, func(r sandbox.NSRef) bool {
		return slices.ContainsFunc(p.st.Namespaces, func(s sandbox.NSRef) bool {
			return s.Owner == "" && s.Type == r.Type && s.Dev == r.Dev && s.Ino == r.Ino
		})
	})
	if st == nil && len(own) == 0 {
		return nil
	}
	p.st.RecordNamespaces(a.pod.ID, own)
	return p.persist()
}

// exited lets the container's claims on the pod go (the R5 increment passes
// to the next container); it reports whether anything changed.
func (p *podPolicy) exited(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil || !p.st.ForgetContainer(id) {
		return nil
	}
	return p.persist()
}

// persist writes the state. Preconditions: mu held.
func (p *podPolicy) persist() error {
	data, err := p.st.Marshal()
	if err != nil {
		return err
	}
	return writeFileAtomic(p.file, data)
}
