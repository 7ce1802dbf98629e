package sandbox

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mounts (R24): every mount of a tenant spec is one of
//   - the kernel filesystems of the OCI/CRI defaults, each at its own place:
//     proc at /proc, sysfs read-only at /sys, cgroup read-only at
//     /sys/fs/cgroup, devpts (newinstance) at /dev/pts, mqueue at
//     /dev/mqueue, and tmpfs anywhere but /proc and /sys (the container's
//     own memory);
//   - a bind of a platform source of this pod (platform.go), which is pinned
//     (Pin) and mounted nodev;
//   - /dev/shm, which the shm step replaces with the pod's own tmpfs;
//   - a hostPath bind that the pod's replacement annotation turns into a
//     pod-private volume or removes (R4).
//
// Everything else is refused: other filesystem types (overlay with host
// lowerdirs, ext4 of a host device, nfs...), proc or a writable sysfs or
// cgroupfs anywhere, binds onto /, /dev, /proc or /sys, bidirectional
// propagation, id-mapped mounts. Destinations and sources must be absolute
// paths without ".." elements.
//
// Masked and read-only paths always contain the defaults (kubelet's and
// containerd's list): a spec that leaves them out or replaces them gets
// them back; extra entries are kept.

// DefaultMaskedPaths and DefaultReadonlyPaths are containerd's and
// kubelet's defaults (without the per-CPU thermal_throttle entries, which
// depend on the host).
var (
	DefaultMaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap"}
	DefaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

const allowedMountsText = "proc at /proc, sysfs ro at /sys, cgroup ro at /sys/fs/cgroup, devpts at /dev/pts, mqueue at /dev/mqueue, " +
	"tmpfs outside /proc and /sys, binds of the pod's own volumes, and hostPath volumes replaced by annotation " + AnnotationHostPathReplacement

// Pin is a bind source to open beneath Root without following symlinks and
// mount, through the opened fd, at Target (a shim-owned staging path under
// the pod dir). The spec's mount source is Target, so what was checked is
// what the container gets, whatever happens to the path afterwards.
type Pin struct {
	Root string `json:"root"`
	// RootTrusted: Root is the node's configured root (or the shim's own)
	// and may contain symlinks; else Root itself is opened with
	// RESOLVE_NO_SYMLINKS from "/".
	RootTrusted bool `json:"rootTrusted"`
	// Anchor, beneath Root, is the pod's own directory: it must be a
	// directory owned by root that group and others cannot write.
	Anchor string `json:"anchor"`
	// Rel is the source beneath Root.
	Rel    string `json:"rel"`
	Target string `json:"target"`
}

// mountPlan is what the mount rules add to the Plan.
type mountPlan struct {
	dirs  []Dir
	pins  []Pin
	roots ObservedRoots
}

var (
	kernelFSOptions = []string{"nosuid", "noexec", "nodev", "ro", "rw", "relatime", "noatime", "strictatime", "nodiratime"}
	tmpfsOptionKeys = []string{"mode=", "size=", "nr_inodes=", "uid=", "gid="}
	devptsOptions   = []string{"newinstance", "ptmxmode=", "mode=", "gid="}
	bindOptions     = []string{"bind", "rbind", "ro", "rw", "rro", "nosuid", "nodev", "noexec", "exec", "suid",
		"relatime", "norelatime", "noatime", "strictatime", "nodiratime", "private", "rprivate", "slave", "rslave",
		"unbindable", "runbindable"}
)

// checkMounts applies the mount rules to spec.Mounts, rewriting platform
// binds to their pin targets and hostPath binds to their replacements.
func checkMounts(spec *specs.Spec, pod *Pod, cfg *Config, podMemory int64) (mountPlan, error) {
	container := pod.Name()
	var mp mountPlan
	if cfg.Pod != nil {
		mp.roots = cfg.Pod.Roots
	}
	repl, vols, err := hostPathAnnotations(pod)
	if err != nil {
		return mp, err
	}
	out := spec.Mounts[:0:0]
	for i, m := range spec.Mounts {
		refuse := func(field, value, reason string) error {
			return &PolicyError{Container: container, Field: field, Value: clip(value), Reason: reason, Allowed: allowedMountsText}
		}
		dest, ok := cleanAbs(m.Destination)
		if !ok {
			return mp, refuse("mount destination", m.Destination, "not an absolute path without '..'")
		}
		m.Destination = dest
		if dest == "/dev/shm" {
			out = append(out, m) // replaced by the shm step
			continue
		}
		if isBind(m) {
			keep, m2, err := checkBind(i, m, pod, cfg, &mp, repl, vols, podMemory)
			if err != nil {
				return mp, err
			}
			if keep {
				out = append(out, m2)
			}
			continue
		}
		if err := checkKernelMount(m, refuse); err != nil {
			return mp, err
		}
		out = append(out, m)
	}
	spec.Mounts = out
	if spec.Linux != nil && (spec.Linux.RootfsPropagation == "shared" || spec.Linux.RootfsPropagation == "rshared") {
		return mp, &PolicyError{Container: container, Field: "linux.rootfsPropagation", Value: spec.Linux.RootfsPropagation,
			Reason: "mounts made in the container would propagate to the host", Allowed: "private, rprivate, slave, rslave"}
	}
	return mp, restoreMaskedPaths(container, spec)
}

func checkKernelMount(m specs.Mount, refuse func(field, value, reason string) error) error {
	field := "mount " + m.Destination
	switch m.Type {
	case "proc":
		if m.Destination != "/proc" {
			return refuse(field, m.Type, "proc is mounted only at /proc")
		}
		return checkOptions(field, m.Options, kernelFSOptions, nil, refuse)
	case "sysfs":
		if m.Destination != "/sys" || !slices.Contains(m.Options, "ro") {
			return refuse(field, m.Type+" "+strings.Join(m.Options, ","), "sysfs only read-only at /sys")
		}
		return checkOptions(field, m.Options, kernelFSOptions, nil, refuse)
	case "cgroup", "cgroup2":
		if m.Destination != "/sys/fs/cgroup" || !slices.Contains(m.Options, "ro") || slices.Contains(m.Options, "rw") {
			return refuse(field, m.Type+" "+strings.Join(m.Options, ","), "cgroupfs only read-only at /sys/fs/cgroup")
		}
		return checkOptions(field, m.Options, kernelFSOptions, nil, refuse)
	case "tmpfs":
		if m.Destination == "/" || underOrAt(m.Destination, "/proc") || underOrAt(m.Destination, "/sys") {
			return refuse(field, m.Type, "tmpfs over /, /proc or /sys")
		}
		return checkOptions(field, m.Options, append(kernelFSOptions, "exec", "suid"), tmpfsOptionKeys, refuse)
	case "devpts":
		if m.Destination != "/dev/pts" || !slices.Contains(m.Options, "newinstance") {
			return refuse(field, m.Type, "devpts only as a new instance at /dev/pts")
		}
		return checkOptions(field, m.Options, append(kernelFSOptions, "newinstance"), devptsOptions, refuse)
	case "mqueue":
		if m.Destination != "/dev/mqueue" {
			return refuse(field, m.Type, "mqueue only at /dev/mqueue")
		}
		return checkOptions(field, m.Options, kernelFSOptions, nil, refuse)
	}
	return refuse("mount type", m.Type, "mounted at "+m.Destination)
}

// checkOptions allows the exact options of plain and key= forms of keyed.
func checkOptions(field string, opts, plain, keyed []string, refuse func(field, value, reason string) error) error {
	for _, o := range opts {
		if slices.Contains(plain, o) {
			continue
		}
		if k, _, ok := strings.Cut(o, "="); ok && slices.Contains(keyed, k+"=") {
			continue
		}
		return refuse(field+" option", o, "")
	}
	return nil
}

// checkBind handles one bind mount: a platform source is pinned, a hostPath
// replaced or removed (R4), anything else refused.
func checkBind(i int, m specs.Mount, pod *Pod, cfg *Config, mp *mountPlan, repl []Replacement, vols map[string]string, podMemory int64) (bool, specs.Mount, error) {
	container := pod.Name()
	refuse := func(field, value, reason string) error {
		return &PolicyError{Container: container, Field: field, Value: clip(value), Reason: reason, Allowed: allowedMountsText}
	}
	field := "mount " + m.Destination
	if err := checkOptions(field, m.Options, bindOptions, nil, refuse); err != nil {
		return false, m, err
	}
	if m.Destination == "/" || m.Destination == "/dev" || underOrAt(m.Destination, "/proc") || underOrAt(m.Destination, "/sys") {
		return false, m, refuse(field, m.Source, "a bind onto /, /dev, /proc or /sys")
	}
	src, ok := cleanAbs(m.Source)
	if !ok {
		return false, m, refuse(field+" source", m.Source, "not an absolute path without '..'")
	}
	ps, ok, why := matchPlatform(src, pod, cfg)
	if !ok {
		return replaceHostPath(m, src, why, pod, cfg, mp, repl, vols, podMemory)
	}
	if err := mp.roots.observe(container, ps); err != nil {
		return false, m, err
	}
	target := filepath.Join(cfg.PinDir, pod.ID, strconv.Itoa(i))
	if ps.VolumeKind != "" {
		target = filepath.Join(target, ps.VolumeKind, "volume")
	}
	mp.pins = append(mp.pins, Pin{Root: ps.Root, RootTrusted: ps.Trusted, Anchor: ps.Anchor, Rel: ps.Rel, Target: target})
	m.Source, m.Type = target, "bind"
	m.Options = slices.Clone(m.Options)
	if !slices.Contains(m.Options, "rbind") && !slices.Contains(m.Options, "bind") {
		m.Options = append(m.Options, "rbind")
	}
	if !slices.Contains(m.Options, "nodev") {
		m.Options = append(m.Options, "nodev")
	}
	return true, m, nil
}

// observe records the root a platform source showed, and refuses a second,
// different one for the same pod: kubelet and containerd have one root each.
func (r *ObservedRoots) observe(container string, ps platformSource) error {
	have := map[string]*string{"kubelet": &r.Kubelet, "cri": &r.Containerd, "cri-state": &r.ContainerdState}[ps.Kind]
	switch {
	case *have == "":
		*have = ps.Root
	case *have != ps.Root:
		return &PolicyError{Container: container, Field: "mount source", Value: clip(ps.Root + "/" + ps.Rel),
			Reason:  "its " + ps.Kind + " directory " + ps.Root + " differs from " + *have + ", seen earlier for this pod",
			Allowed: "the pod's own volumes under one kubelet root and one containerd root"}
	}
	return nil
}

// cleanAbs returns p cleaned when it is absolute, has no ".." element and no
// NUL, and is at most 4096 bytes.
func cleanAbs(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || len(p) > 4096 || strings.ContainsRune(p, 0) {
		return "", false
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return "", false
		}
	}
	return filepath.Clean(p), true
}

func underOrAt(p, dir string) bool { return p == dir || under(p, dir) }

// restoreMaskedPaths adds the default masked and read-only paths a spec
// lacks; entries must be clean absolute paths.
func restoreMaskedPaths(container string, spec *specs.Spec) error {
	if spec.Linux == nil {
		spec.Linux = &specs.Linux{}
	}
	for _, l := range []struct {
		field string
		list  *[]string
		def   []string
	}{{"linux.maskedPaths", &spec.Linux.MaskedPaths, DefaultMaskedPaths}, {"linux.readonlyPaths", &spec.Linux.ReadonlyPaths, DefaultReadonlyPaths}} {
		for _, p := range *l.list {
			if c, ok := cleanAbs(p); !ok || c != p {
				return &PolicyError{Container: container, Field: l.field, Value: clip(p), Allowed: "clean absolute paths"}
			}
		}
		for _, d := range l.def {
			if !slices.Contains(*l.list, d) {
				*l.list = append(*l.list, d)
			}
		}
	}
	return nil
}
