package sandbox

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/sandbox/backend"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// FuzzApply drives whole specs through the policy: a legitimate CRI sandbox,
// CRI app container or ctr spec, changed by a sequence of hostile edits that
// the fuzzer picks (mounts, devices, device rules, namespaces, capabilities,
// cgroup paths, masked paths, names and UIDs with "..", "/", NUL and long
// strings, annotations). For every spec the policy accepts, the invariants
// of R24 must hold (checkInvariants), and an exec process derived from it
// that CheckExec accepts must be no wider than the container.
func FuzzApply(f *testing.F) {
	f.Add([]byte{0})
	f.Add([]byte{1, 0, 3, 1, 7})
	f.Add([]byte{2, 5, 2, 9, 1, 4})
	f.Add([]byte{1, 3, 0, 4, 2, 6, 11, 12, 5})
	f.Add([]byte{1, 10, 3, 10, 5, 8, 8, 2, 0, 9})
	f.Add([]byte{0, 6, 1, 13, 4, 14, 6, 15, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &gen{data: data}
		cfg := baseConfig("k8s.io")
		if g.byte()%4 == 3 {
			cfg.Isolation = backend.IsolationVM
		}
		var s *specs.Spec
		var id string
		switch g.byte() % 3 {
		case 0:
			s, id = criSandbox(), tSandboxID
		case 1:
			cfg.Pod = sandboxState(t, cfg)
			s, id = criContainer(), tContainerID
		default:
			cfg.Namespace = "tenant"
			s, id = ctrSpec(t, "web"), "web"
		}
		for n := 0; n < 12 && !g.done(); n++ {
			g.mutate(s)
		}
		pod, err := PodOfContainer(s, id)
		if err != nil {
			return
		}
		plan, err := Apply(s, pod, cfg)
		if err != nil {
			return
		}
		if err := checkInvariants(s, pod, cfg, plan); err != nil {
			t.Fatal(err)
		}
		if pod.Type != TypeSandbox {
			p := *s.Process
			p.Capabilities = &specs.LinuxCapabilities{}
			if c := s.Process.Capabilities; c != nil {
				*p.Capabilities = *c
			}
			g.mutateProcess(&p)
			if CheckExec(pod.Name(), s, &p, cfg) == nil {
				checkExecInvariants(t, s.Process, &p)
			}
		}
	})
}

type gen struct {
	data []byte
	i    int
}

func (g *gen) done() bool { return g.i >= len(g.data) }

func (g *gen) byte() byte {
	if g.done() {
		return 0
	}
	b := g.data[g.i]
	g.i++
	return b
}

func pick[T any](g *gen, xs []T) T { return xs[int(g.byte())%len(xs)] }

// nasty strings: what a tenant puts into names, UIDs and paths.
var nasty = []string{"..", "../..", "/", "", "a/../../etc", "x\x00y", strings.Repeat("a", 300), tOtherUID, tUID,
	tSandboxID, tOtherID, "uid-1", "kubernetes.io~empty-dir", "pods", "io.containerd.grpc.v1.cri", "/proc/1/root", "."}

var fuzzSources = []string{
	"/etc", "/", "/var/run/docker.sock", "/dev/sda", tPodDir + "/shm/x", tPodDir + "/volumes", "/run/cci-shim/x",
	tKubelet + "/pods/" + tUID + "/volumes/kubernetes.io~empty-dir/d",
	tKubelet + "/pods/" + tUID + "/volumes/kubernetes.io~secret/s/../../../../..",
	tKubelet + "/pods/" + tOtherUID + "/volumes/kubernetes.io~secret/s",
	tKubelet + "/pods/" + tUID + "/etc-hosts",
	tKubelet + "/pods/" + tUID,
	"/data/kubelet/pods/" + tUID + "/volumes/kubernetes.io~configmap/c",
	"/proc/1/root" + tKubelet + "/pods/" + tUID + "/volumes/kubernetes.io~empty-dir/d",
	"/tmp/x/pods/" + tUID + "/volumes/kubernetes.io~empty-dir/d",
	tCRIRoot + "/sandboxes/" + tSandboxID + "/hosts",
	tCRIRoot + "/sandboxes/" + tOtherID + "/hosts",
	tCRIState + "/image-volumes/" + tSandboxID + "/img",
	tCRIRoot + "/containers/" + tContainerID + "/volumes/v",
	tCRIRoot + "/containers/" + tOtherID + "/volumes/v",
	"/srv/containerd/io.containerd.grpc.v1.cri/sandboxes/" + tSandboxID + "/resolv.conf",
}

var fuzzDests = []string{"/data", "/", "/dev", "/proc", "/proc/sys", "/sys", "/sys/fs/cgroup", "/dev/shm", "/etc/hosts",
	"relative", "/a/../../b", "/dev/pts", "/dev/mqueue", "/run/x"}

var fuzzTypes = []string{"bind", "", "none", "proc", "sysfs", "cgroup", "cgroup2", "tmpfs", "devpts", "mqueue", "overlay", "ext4", "nfs"}

var fuzzOptions = []string{"rbind", "bind", "ro", "rw", "rshared", "shared", "rslave", "dev", "suid", "newinstance",
	"size=1g", "lowerdir=/etc", "idmap", "nodev"}

var fuzzCaps = append(clone(knownCaps), "ALL", "CAP_FUTURE", "")

var fuzzNSPaths = []string{"", "/proc/1/ns/net", "/proc/2/ns/net", "/proc/self/ns/net", tNetns, "/var/run/netns/cni-other",
	fmt.Sprintf("/proc/%d/ns/net", tPausePID), fmt.Sprintf("/proc/%d/ns/ipc", tPausePID), fmt.Sprintf("/proc/%d/ns/mnt", tPausePID),
	"/proc/5000/ns/net", "relative", "/proc/1/../2/ns/net"}

func (g *gen) mutate(s *specs.Spec) {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &specs.LinuxResources{}
	}
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	if s.Process.Capabilities == nil {
		s.Process.Capabilities = &specs.LinuxCapabilities{}
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	switch g.byte() % 17 {
	case 0: // add a mount
		m := specs.Mount{Source: pick(g, fuzzSources), Destination: pick(g, fuzzDests), Type: pick(g, fuzzTypes)}
		for n := int(g.byte() % 3); n >= 0; n-- {
			m.Options = append(m.Options, pick(g, fuzzOptions))
		}
		s.Mounts = append(s.Mounts, m)
		if g.byte()%2 == 0 {
			s.Annotations[AnnotationHostPathReplacement] = pick(g, []string{`[{"name":"*","policyType":"replaceByEmptyDir"}]`,
				`[{"name":"*","policyType":"replaceByLocalDir","localDir":{"sizeLimit":"1Gi"}}]`, `[{"name":"d","policyType":"remove"}]`})
		}
	case 1: // change a mount
		if len(s.Mounts) > 0 {
			m := &s.Mounts[int(g.byte())%len(s.Mounts)]
			switch g.byte() % 4 {
			case 0:
				m.Source = pick(g, fuzzSources) + pick(g, []string{"", "/" + pick(g, nasty)})
			case 1:
				m.Destination = pick(g, fuzzDests)
			case 2:
				m.Type = pick(g, fuzzTypes)
			case 3:
				m.Options = append(m.Options, pick(g, fuzzOptions))
			}
		}
	case 2: // a device
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: pick(g, []string{"/dev/null", "/dev/sda", "/etc/x", "/dev/../x"}),
			Type: pick(g, []string{"c", "b", "u", "p"}), Major: int64(pick(g, []int{1, 5, 7, 8, 10, 136, 195})), Minor: int64(g.byte() % 12)})
	case 3: // a device rule
		r := specs.LinuxDeviceCgroup{Allow: g.byte()%2 == 0, Type: pick(g, []string{"", "a", "b", "c"}), Access: pick(g, []string{"rwm", "r", "", "x"})}
		if g.byte()%2 == 0 {
			r.Major = i64(int64(pick(g, []int{1, 5, 7, 8, 136, 195})))
		}
		if g.byte()%2 == 0 {
			r.Minor = i64(int64(g.byte() % 12))
		}
		if g.byte()%2 == 0 {
			s.Linux.Resources.Devices = append([]specs.LinuxDeviceCgroup{r}, s.Linux.Resources.Devices...)
		} else {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, r)
		}
	case 4: // a namespace path or type
		if len(s.Linux.Namespaces) > 0 && g.byte()%3 != 0 {
			s.Linux.Namespaces[int(g.byte())%len(s.Linux.Namespaces)].Path = pick(g, fuzzNSPaths)
		} else {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: pick(g, []specs.LinuxNamespaceType{"user", "time", "network", "cgroup", "bogus"}),
				Path: pick(g, fuzzNSPaths)})
		}
	case 5: // drop a namespace
		if len(s.Linux.Namespaces) > 0 {
			i := int(g.byte()) % len(s.Linux.Namespaces)
			s.Linux.Namespaces = append(s.Linux.Namespaces[:i], s.Linux.Namespaces[i+1:]...)
		}
	case 6: // a capability in some set
		c := pick(g, fuzzCaps)
		switch g.byte() % 5 {
		case 0:
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, c)
		case 1:
			s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, c)
		case 2:
			s.Process.Capabilities.Permitted = append(s.Process.Capabilities.Permitted, c)
		case 3:
			s.Process.Capabilities.Inheritable = append(s.Process.Capabilities.Inheritable, c)
		case 4:
			s.Process.Capabilities.Ambient = append(s.Process.Capabilities.Ambient, c)
		}
	case 7: // cgroups path
		s.Linux.CgroupsPath = pick(g, []string{"", "/", "/kubepods/burstable", "/kubepods/burstable/pod" + tOtherUID + "/" + tOtherID,
			"/kubepods/pod" + tUID + "/" + tSandboxID, "kubepods-pod" + strings.ReplaceAll(tUID, "-", "_") + ".slice:cri-containerd:" + tSandboxID,
			"/../../sys", "x:y:z"}) + pick(g, []string{"", "/" + pick(g, nasty)})
	case 8: // masked / read-only paths
		if g.byte()%2 == 0 {
			s.Linux.MaskedPaths = []string{pick(g, nasty)}
		} else {
			s.Linux.ReadonlyPaths = nil
		}
	case 9: // identity annotations
		k := pick(g, []string{AnnotationSandboxUID, AnnotationSandboxID, AnnotationSandboxName, AnnotationSandboxNamespace, AnnotationContainerName, AnnotationContainerType})
		s.Annotations[k] = pick(g, nasty)
	case 10: // platform annotations
		k := pick(g, []string{AnnotationContainers, AnnotationHostPathReplacement, AnnotationHostPathVolumes, AnnotationShmSize,
			"io.katacontainers.config.hypervisor.path", "cdi.k8s.io/vfio1", "org.criu.config", AnnotationSandboxMemory, AnnotationSandboxCPUQuota})
		s.Annotations[k] = pick(g, []string{`[{"name":"*","policyType":"replaceByEmptyDir"}]`, `[{"name":"app","limits":{"cpu":"300m","memory":"16Gi"}}]`,
			`{"` + pick(g, nasty) + `":"/etc"}`, "128Mi", "9999999999999", "0", pick(g, nasty)})
	case 11: // resources
		switch g.byte() % 4 {
		case 0:
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: i64(int64(g.byte()) << 26)}
		case 1:
			s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: i64(int64(g.byte()) * 10000), Period: u64(100000), RealtimeRuntime: i64(int64(g.byte() % 2))}
		case 2:
			s.Linux.Resources.Unified = map[string]string{pick(g, []string{"memory.max", "io.max", "memory.min", "memory.oom.group"}): pick(g, []string{"1", "max", "1099511627776"})}
		case 3:
			s.Linux.Resources.BlockIO = &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1}}}
		}
	case 12: // root
		s.Root = &specs.Root{Path: pick(g, []string{"rootfs", "/", "/etc", "../rootfs", "rootfs/../.."})}
	case 13: // hooks and other refused fields
		switch g.byte() % 3 {
		case 0:
			s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/sh"}}}
		case 1:
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{Size: 1}}
		case 2:
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: pick(g, []specs.LinuxSeccompAction{specs.ActAllow, specs.ActErrno, specs.ActNotify, specs.ActLog})}
		}
	case 14: // process security
		switch g.byte() % 4 {
		case 0:
			s.Process.ApparmorProfile = pick(g, []string{"unconfined", "", "cri-containerd.apparmor.d"})
		case 1:
			s.Process.SelinuxLabel = pick(g, []string{"system_u:system_r:spc_t:s0", "system_u:system_r:container_t:s0:c1,c2", pick(g, nasty)})
		case 2:
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: pick(g, []string{"RLIMIT_RTPRIO", "RLIMIT_NOFILE", "RLIMIT_BOGUS"}),
				Hard: uint64(g.byte()) << (g.byte() % 24), Soft: uint64(g.byte())})
		case 3:
			s.Process.Scheduler = &specs.Scheduler{Policy: pick(g, []specs.LinuxSchedulerPolicy{specs.SchedFIFO, specs.SchedOther, "SCHED_X"})}
		}
	case 15: // sysctls
		s.Linux.Sysctl = map[string]string{pick(g, []string{"kernel.panic", "net.core.somaxconn", "net.netfilter.x", "kernel.shmmax", pick(g, nasty)}): "1"}
	case 16: // privileged look
		s.Process.Capabilities.Bounding = clone(allCaps)
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	}
}

func (g *gen) mutateProcess(p *specs.Process) {
	for n := int(g.byte() % 4); n > 0; n-- {
		switch g.byte() % 6 {
		case 0:
			p.Capabilities.Effective = append(p.Capabilities.Effective, pick(g, fuzzCaps))
		case 1:
			p.Capabilities.Ambient = append(p.Capabilities.Ambient, pick(g, fuzzCaps))
		case 2:
			p.User = specs.User{UID: uint32(g.byte() % 3), GID: uint32(g.byte() % 3)}
		case 3:
			p.NoNewPrivileges = !p.NoNewPrivileges
		case 4:
			p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: uint64(g.byte()) << 12})
		case 5:
			if len(p.Capabilities.Bounding) > 0 {
				p.Capabilities.Bounding = p.Capabilities.Bounding[1:]
			}
		}
	}
}

// TestFuzzApplyHasTeeth: the generator reaches accepted specs of every kind
// (so the invariants are exercised, not only refusals), and the invariant
// checker catches what the policy must never let through.
func TestFuzzApplyHasTeeth(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	accepted := map[string]int{}
	for n := 0; n < 3000; n++ {
		data := make([]byte, 2+rng.IntN(12))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		g := &gen{data: data}
		cfg := baseConfig("k8s.io")
		g.byte()
		var s *specs.Spec
		var id, kind string
		switch g.byte() % 3 {
		case 0:
			s, id, kind = criSandbox(), tSandboxID, "sandbox"
		case 1:
			cfg.Pod = sandboxState(t, cfg)
			s, id, kind = criContainer(), tContainerID, "container"
		default:
			cfg.Namespace = "tenant"
			s, id, kind = ctrSpec(t, "web"), "web", "ctr"
		}
		edits := 0
		for k := 0; k < 12 && !g.done(); k++ {
			g.mutate(s)
			edits++
		}
		plan, err := applySpec(s, id, cfg)
		if err != nil || edits == 0 {
			continue
		}
		accepted[kind]++
		if len(plan.Dirs) > 0 {
			accepted["with R4 replacement"]++
		}
		pod, _ := PodFromSpec(s)
		pod.ID = id
		if err := checkInvariants(s, pod, cfg, plan); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("accepted after hostile edits: %v", accepted)
	for _, k := range []string{"sandbox", "container", "ctr", "with R4 replacement"} {
		if accepted[k] < 10 {
			t.Errorf("only %d accepted %s specs: the fuzz target would check little", accepted[k], k)
		}
	}

	// The checker itself: a spec the policy accepted, then broken by hand.
	cfg := baseConfig("k8s.io")
	cfg.Pod = sandboxState(t, cfg)
	for _, tc := range []struct {
		name   string
		break_ func(*specs.Spec, *Plan)
	}{
		{"host bind", func(s *specs.Spec, _ *Plan) { s.Mounts = append(s.Mounts, bind("/etc", "/etc2")) }},
		{"host device", func(s *specs.Spec, _ *Plan) {
			s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/sda", Type: "b", Major: 8})
		}},
		{"masked path dropped", func(s *specs.Spec, _ *Plan) { s.Linux.MaskedPaths = s.Linux.MaskedPaths[1:] }},
		{"host netns", func(s *specs.Spec, _ *Plan) { s.Linux.Namespaces[4].Path = "/proc/1/ns/net" }},
		{"pin escaping", func(_ *specs.Spec, p *Plan) { p.Pins[0].Rel = p.Pins[0].Anchor + "/../../../etc" }},
		{"tenant name in a host path", func(_ *specs.Spec, p *Plan) { p.Dirs = append(p.Dirs, Dir{Path: tPodDir + "/volumes/my-volume"}) }},
		{"another container's cgroup", func(s *specs.Spec, _ *Plan) { s.Linux.CgroupsPath = "/kubepods/x/" + tOtherID }},
	} {
		s := criContainer()
		plan, err := applySpec(s, tContainerID, cfg)
		if err != nil {
			t.Fatal(err)
		}
		tc.break_(s, plan)
		pod, _ := PodFromSpec(s)
		pod.ID = tContainerID
		if err := checkInvariants(s, pod, cfg, plan); err == nil {
			t.Errorf("%s: invariants hold on a broken spec", tc.name)
		}
	}
}

// FuzzDecodeApply feeds arbitrary config.json bytes (seeded with real
// specs) through DecodeSpec and Apply: no panic on any input (nulls, huge
// numbers, missing sections), and the invariants on whatever is accepted.
func FuzzDecodeApply(f *testing.F) {
	for _, s := range []*specs.Spec{criSandbox(), criContainer(), ctrSpec(f, "web")} {
		data, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, byte(0))
	}
	f.Add([]byte(`{"ociVersion":"1","root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"network"},{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}]}}`), byte(2))
	f.Add([]byte(`{"process":null,"linux":{"resources":{"memory":{"limit":-1},"cpu":{"quota":9223372036854775807,"period":0}}}}`), byte(1))
	f.Fuzz(func(t *testing.T, data []byte, which byte) {
		s, err := DecodeSpec(data)
		if err != nil {
			return
		}
		cfg := baseConfig("k8s.io")
		id := tSandboxID
		switch which % 3 {
		case 1:
			cfg.Pod, id = sandboxState(t, cfg), tContainerID
		case 2:
			cfg.Namespace, id = "tenant", "web"
		}
		pod, err := PodOfContainer(s, id)
		if err != nil {
			return
		}
		plan, err := Apply(s, pod, cfg)
		if err != nil {
			return
		}
		if err := checkInvariants(s, pod, cfg, plan); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseContainers: the R5 annotation parser never panics and what it
// accepts is well-formed.
func FuzzParseContainers(f *testing.F) {
	f.Add(`[{"name":"app","limits":{"cpu":"300m","memory":"1Gi"}},{"name":"side","init":true,"sidecar":true,"requests":{"cpu":"0.1"}}]`)
	f.Add(`[{"name":"a","sidecar":true}]`)
	f.Fuzz(func(t *testing.T, v string) {
		cs, err := ParseContainers(v)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, c := range cs {
			if c.Name == "" || seen[c.Name] || c.Sidecar && !c.Init {
				t.Fatalf("accepted %+v", c)
			}
			seen[c.Name] = true
			for _, r := range []Resources{c.Requests, c.Limits} {
				if r.MilliCPU < 0 || r.Memory < 0 || r.MilliCPU > maxQuantity || r.Memory > maxQuantity {
					t.Fatalf("accepted %+v", c)
				}
			}
		}
	})
}
