package sandbox

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var reSafeComponent = regexp.MustCompile(`^(pins|volumes|images|shm|volume|[0-9]+|(vol|path)-[0-9a-f]{32}(\.img)?|kubernetes\.io~(empty-dir|configmap|secret|projected|downward-api))$`)

// checkInvariants are R24's promises for an accepted spec; it returns the
// first one broken.
func checkInvariants(s *specs.Spec, pod *Pod, cfg Config, plan *Plan) (err error) {
	type broken struct{ error }
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(broken)
			if !ok {
				panic(r)
			}
			err = b.error
		}
	}()
	fail := func(format string, args ...any) {
		panic(broken{fmt.Errorf("accepted spec breaks an invariant: "+format, args...)})
	}
	// Host paths the shim will create or mount are under the pod dir and
	// made of fixed words, validated ids, indices and hashes only.
	hostPath := func(p string) {
		rel, err := filepath.Rel(tPodDir, p)
		if err != nil || strings.HasPrefix(rel, "..") || filepath.Clean(p) != p {
			fail("host path %q outside the pod dir", p)
		}
		for _, c := range strings.Split(rel, "/") {
			if !reSafeComponent.MatchString(c) && c != pod.ID {
				fail("host path %q has component %q not made by the shim", p, c)
			}
		}
	}
	for _, d := range plan.Dirs {
		hostPath(d.Path)
		if d.Image != "" {
			hostPath(d.Image)
		}
	}
	hostPath(plan.Shm.Path)
	pins := map[string]Pin{}
	for _, p := range plan.Pins {
		hostPath(p.Target)
		pins[p.Target] = p
		// No bind source outside the pod's own platform directory.
		full := filepath.Join(p.Root, p.Rel)
		if !filepath.IsAbs(p.Root) || full != filepath.Clean(p.Root+"/"+p.Rel) || !strings.HasPrefix(p.Rel, p.Anchor+"/") ||
			strings.Contains("/"+p.Rel+"/", "/../") {
			fail("pin %+v escapes its anchor", p)
		}
		own := []string{"pods/" + pod.UID, criDir + "/sandboxes/" + pod.SandboxID, criDir + "/image-volumes/" + pod.SandboxID, criDir + "/containers/" + pod.ID}
		if !slices.Contains(own, p.Anchor) || pod.UID == "" && strings.HasPrefix(p.Anchor, "pods/") {
			fail("pin %+v is not this pod's own directory", p)
		}
		trusted := []string{tKubelet, "/var/lib/containerd", "/run/containerd"}
		if p.RootTrusted != slices.Contains(trusted, p.Root) {
			fail("pin %+v: trusted flag wrong", p)
		}
		if !p.RootTrusted {
			for _, bad := range []string{"/proc", "/sys", "/dev", tPodDir, "/run/cci-shim"} {
				if underOrAt(p.Root, bad) {
					fail("pin %+v: inferred root under %s", p, bad)
				}
			}
		}
	}
	allowedTypes := map[string]string{"proc": "/proc", "sysfs": "/sys", "cgroup": "/sys/fs/cgroup", "cgroup2": "/sys/fs/cgroup", "devpts": "/dev/pts", "mqueue": "/dev/mqueue"}
	for _, m := range s.Mounts {
		switch {
		case isBind(m):
			switch {
			case m.Destination == "/dev/shm":
				if m.Source != plan.Shm.Path {
					fail("/dev/shm from %q", m.Source)
				}
			case strings.HasPrefix(m.Source, tPodDir+"/pins/"):
				if _, ok := pins[m.Source]; !ok || !slices.Contains(m.Options, "nodev") {
					fail("pinned mount %+v without its pin or nodev", m)
				}
			default:
				if !slices.ContainsFunc(plan.Dirs, func(d Dir) bool { return d.Path == m.Source }) {
					fail("bind source %q is neither a pin nor a replacement volume", m.Source)
				}
			}
			if slices.Contains(m.Options, "rshared") || slices.Contains(m.Options, "shared") {
				fail("shared propagation %+v", m)
			}
		case m.Type == "tmpfs":
			if underOrAt(m.Destination, "/proc") || underOrAt(m.Destination, "/sys") {
				fail("tmpfs at %s", m.Destination)
			}
		default:
			if want, ok := allowedTypes[m.Type]; !ok || m.Destination != want {
				fail("mount %+v", m)
			}
			if (m.Type == "sysfs" || strings.HasPrefix(m.Type, "cgroup")) && !slices.Contains(m.Options, "ro") {
				fail("writable %s", m.Type)
			}
		}
	}
	// Devices and device rules.
	for _, d := range s.Linux.Devices {
		if _, ok := defaultDevices[devID{d.Major, d.Minor}]; !ok || d.Type != "c" {
			fail("device %+v", d)
		}
	}
	rules := s.Linux.Resources.Devices
	if len(rules) == 0 || !isDenyAll(rules[0]) {
		fail("device rules %+v do not start with deny-all", rules)
	}
	for _, r := range rules {
		if r.Allow && !allowedRule(r) {
			fail("device rule %+v", r)
		}
	}
	// Masked and read-only paths contain the defaults.
	for _, d := range DefaultMaskedPaths {
		if !slices.Contains(s.Linux.MaskedPaths, d) {
			fail("masked paths %v lack %s", s.Linux.MaskedPaths, d)
		}
	}
	for _, d := range DefaultReadonlyPaths {
		if !slices.Contains(s.Linux.ReadonlyPaths, d) {
			fail("read-only paths %v lack %s", s.Linux.ReadonlyPaths, d)
		}
	}
	// Namespaces: new, or the pod's own; never the host's.
	res := testResolver()
	for _, ns := range s.Linux.Namespaces {
		if !slices.Contains(podNamespaceTypes, ns.Type) {
			fail("namespace type %s", ns.Type)
		}
		if ns.Path == "" {
			continue
		}
		ref, err := res.Resolve(ns.Path)
		if err != nil || slices.ContainsFunc(hostNS, ref.same) {
			fail("namespace %+v is the host's or not one", ns)
		}
		if pod.Type == TypeContainer && !slices.ContainsFunc([]NSRef{podNet, podIPC, podUTS, podPID}, ref.same) {
			fail("namespace %+v is not the pod's", ns)
		}
		if pod.IsSandbox() && (pod.Type != TypeSandbox || ns.Type != "network") {
			fail("sandbox joins %+v", ns)
		}
	}
	// Capabilities that are host root never pass on a shared kernel.
	if !cfg.Isolation.IsolatesKernel() {
		for _, set := range capSets(s.Process.Capabilities) {
			for _, c := range set {
				if slices.Contains(HostRootCapabilities, c) {
					fail("host-root capability %s on runc", c)
				}
			}
		}
	}
	// cgroups path: the container's own, under the pod's parent.
	if cg := s.Linux.CgroupsPath; !strings.HasSuffix(cg, "/"+pod.ID) && !strings.HasSuffix(cg, ":"+pod.ID) {
		fail("cgroups path %q is not the container's own", cg)
	}
	if s.Root == nil || s.Root.Path != "rootfs" || s.Hooks != nil || len(s.Linux.UIDMappings) > 0 {
		fail("root %+v hooks %+v", s.Root, s.Hooks)
	}
	for k := range s.Annotations {
		if !annotationAllowed(k) {
			fail("annotation %q", k)
		}
	}
	return nil
}

func checkExecInvariants(t *testing.T, c, p *specs.Process) {
	t.Helper()
	have, got := capSets(c.Capabilities), capSets(p.Capabilities)
	for set, caps := range got {
		for _, cp := range caps {
			if !slices.Contains(have[set], cp) {
				t.Fatalf("accepted exec has %s capability %s the container lacks", set, cp)
			}
		}
	}
	if c.User.UID != 0 && (p.User.UID != c.User.UID || p.User.GID != c.User.GID) {
		t.Fatalf("accepted exec runs as %d:%d in a %d:%d container", p.User.UID, p.User.GID, c.User.UID, c.User.GID)
	}
	if c.NoNewPrivileges && !p.NoNewPrivileges {
		t.Fatal("accepted exec regains privileges")
	}
}
