package sandbox

import (
	"bufio"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// RemoveCgroup removes the cgroup directory at path (relative to the
// hierarchy root, e.g. /cci-shim/k8s.io/pod-<id>) in every cgroup hierarchy
// mounted, where it exists and is empty: a pod parent the shim chose, which
// the OCI runtime creates for the first container and never removes. A
// directory that still has children or processes is left (the kernel
// refuses with EBUSY) and reported.
func RemoveCgroup(p string) error {
	if err := cleanCgroupPath(p); err != nil {
		return err
	}
	roots, err := CgroupHierarchies()
	var errs []error
	for _, root := range roots {
		if err := os.Remove(filepath.Join(root, p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, err)...)
}

// CgroupHierarchies returns the mount points of the host's cgroup
// hierarchies (v1 controllers, the v2 unified tree), from mountinfo.
func CgroupHierarchies() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint options ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, fstype := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(fstype) == 0 || (fstype[0] != "cgroup" && fstype[0] != "cgroup2") {
			continue
		}
		roots = append(roots, fields[4])
	}
	return roots, sc.Err()
}

// OwnedCgroupParent reports whether a pod parent recorded in the pod's
// state (PodState.CgroupParent) is one the shim chose for this pod alone
// (<CgroupRoot>/<namespace>/pod-<sandbox id>), which the shim then removes
// with the pod; kubelet's pod cgroups and the namespace-wide parent of
// standalone containers are not.
func OwnedCgroupParent(parent string) bool {
	return strings.HasPrefix(parent, DefaultCgroupRoot+"/") && strings.HasPrefix(path.Base(parent), "pod-")
}
