package shim

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/logfwd"
)

// checkLogMounts refuses a log directory of this container that lies on a
// tmpfs mount of its spec (R19: log paths on system, device, cgroup and
// tmpfs mounts are refused when the pod is created): a tmpfs the tenant
// declared, or a bind whose source is a tmpfs (a Memory emptyDir or
// replacement volume). It runs after the policy, so every bind source in
// the spec is the shim's own (a pin target, a replacement volume, the
// pod's shm) and is statfs'd as such. The fixed trees (/proc, /sys, /dev,
// /run) are refused by logfwd.ParsePolicies already.
func checkLogMounts(container string, spec *specs.Spec, watches []logfwd.Watch) error {
	for _, w := range watches {
		if w.Container != container {
			continue
		}
		for _, m := range spec.Mounts {
			d := path.Clean(m.Destination)
			if d != w.Dir && !strings.HasPrefix(w.Dir, strings.TrimSuffix(d, "/")+"/") {
				continue
			}
			if !onTmpfs(m) {
				continue
			}
			return fmt.Errorf("annotation %s: path %q of container %q is on a tmpfs mount (at %s); allowed: log paths on the container's disk, not on /proc, /sys, /dev, cgroup or tmpfs mounts: %w",
				logfwd.AnnotationPolicies, path.Join(w.Dir, w.Pattern), container, d, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// onTmpfs reports whether m is a tmpfs, or a bind of a directory on one.
func onTmpfs(m specs.Mount) bool {
	if m.Type == "tmpfs" {
		return true
	}
	if !isBindMount(m) {
		return false
	}
	var st unix.Statfs_t
	return unix.Statfs(m.Source, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

func isBindMount(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}
