package shim

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/sandbox"
)

// cgroupRoot is where the host's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// podCgroupParent is the cgroup parent the policy chose for a CRI pod of
// its own (<sandbox.DefaultCgroupRoot>/<namespace>/pod-<sandbox id>, when
// the pod has no kubelet pod cgroup): runc removes each container's cgroup
// and kubelet its own pod cgroups, but nobody else removes this one, so the
// pod records it. "" for kubelet's parent and for a standalone container's
// (the namespace's parent, shared by its containers).
func podCgroupParent(namespace string, a *admission) string {
	if a.pod.Type != sandbox.TypeSandbox || a.plan.State == nil {
		return ""
	}
	if p := a.plan.State.CgroupParent; p == path.Join(sandbox.DefaultCgroupRoot, namespace, "pod-"+a.pod.SandboxID) {
		return p
	}
	return ""
}

// removeCgroupDir removes the empty cgroup p (a podCgroupParent) from every
// mounted hierarchy: each v1 controller, the hybrid "unified" and named
// hierarchies, or the unified v2 mount. Done by hand rather than with
// cgroups/v3, whose v1 loader knows the controllers only. A cgroup that is
// gone is fine; one that still holds a cgroup or a process is an error.
func removeCgroupDir(p string) error {
	if path.Clean(p) != p || !strings.HasPrefix(p, sandbox.DefaultCgroupRoot+"/") {
		return fmt.Errorf("refusing to remove cgroup %q outside %s", p, sandbox.DefaultCgroupRoot)
	}
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", p))
	dirs = append(dirs, filepath.Join(cgroupRoot, p))
	var errs []error
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR) {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
