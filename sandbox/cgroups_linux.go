package sandbox

import (
	"bufio"
	"errors"
	"fmt"
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
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("cgroup %q: not a clean absolute path below the root", p)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint options ... - fstype source options
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 || (fields[sep+1] != "cgroup" && fields[sep+1] != "cgroup2") {
			continue
		}
		if err := os.Remove(filepath.Join(fields[4], p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, sc.Err())...)
}

// OwnedCgroupParent reports whether a pod parent recorded in the pod's
// state (PodState.CgroupParent) is one the shim chose for this pod alone
// (<CgroupRoot>/<namespace>/pod-<sandbox id>), which the shim then removes
// with the pod; kubelet's pod cgroups and the namespace-wide parent of
// standalone containers are not.
func OwnedCgroupParent(parent string) bool {
	return strings.HasPrefix(parent, DefaultCgroupRoot+"/") && strings.HasPrefix(path.Base(parent), "pod-")
}
