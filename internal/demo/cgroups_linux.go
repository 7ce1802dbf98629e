package demo

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// removeNamespaceCgroups removes the cgroup directory containerd's default
// spec gives a namespace's containers as their parent (/<namespace>/<id>):
// runc removes each container's own directory, never that parent. It removes
// only empty directories, in every cgroup hierarchy mounted.
func removeNamespaceCgroups(namespace string) error {
	if namespace == "" || strings.ContainsAny(namespace, "/.") {
		return fmt.Errorf("namespace %q: not a cgroup directory name", namespace)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var errs []error
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mountpoint ... - fstype source options
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
		dir := filepath.Join(fields[4], namespace)
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, sc.Err())...)
}
