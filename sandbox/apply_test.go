package sandbox

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/sandbox/backend"
	"github.com/cci-shim/cci-shim/shm"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var allCaps = append(append([]string{}, privilegedCaps...), "CAP_CHOWN", "CAP_KILL")

func TestCheckRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mut     func(*specs.Spec)
		wantErr string
	}{
		{name: "ordinary"},
		{name: "SYS_ADMIN is no R3 refusal", mut: func(s *specs.Spec) { s.Process.Capabilities.Bounding = []string{"CAP_SYS_ADMIN"} }},
		{name: "all caps with masked paths", mut: func(s *specs.Spec) { s.Process.Capabilities.Bounding = allCaps }},
		{name: "all caps no masks", mut: func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = allCaps
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
		}, wantErr: `container "app": privileged "true" is not allowed (all capabilities with no masked or read-only paths); allowed: unprivileged containers with fine-grained capabilities (e.g. CAP_SYS_ADMIN)`},
		{name: "rw sys", mut: func(s *specs.Spec) { s.Mounts[4].Options = []string{"nosuid", "rw"} }, wantErr: "/sys mounted read-write"},
		{name: "all devices", mut: func(s *specs.Spec) {
			s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		}, wantErr: "access to all devices"},
		{name: "host network", mut: func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[:4] },
			wantErr: `linux.namespaces.network "host" is not allowed (host network namespace)`},
		{name: "host pid", mut: func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }, wantErr: "host pid namespace"},
		{name: "no linux section", mut: func(s *specs.Spec) { s.Linux = nil }, wantErr: "host network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := criContainer()
			if tc.mut != nil {
				tc.mut(s)
			}
			err := CheckRefusals("app", s)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("not ErrInvalidArgument: %v", err)
			}
		})
	}
}

func TestPodFromSpec(t *testing.T) {
	p, err := PodFromSpec(criContainer())
	if err != nil || p.Type != TypeContainer || p.SandboxID != tSandboxID || p.UID != tUID || p.Name() != "app" || p.IsSandbox() {
		t.Fatalf("got %+v, %v", p, err)
	}
	p, err = PodFromSpec(&specs.Spec{})
	if err != nil || p.Type != TypeStandalone || !p.IsSandbox() {
		t.Fatalf("standalone: %+v, %v", p, err)
	}
	if _, err := PodFromSpec(&specs.Spec{Annotations: map[string]string{AnnotationContainerType: "vm"}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad type: %v", err)
	}
	if _, err := PodFromSpec(&specs.Spec{Annotations: map[string]string{AnnotationContainerType: "sandbox"}}); err == nil {
		t.Fatal("sandbox without id accepted")
	}
	// A container's pod: its id, and a ctr container named by it; a CRI
	// container keeps its CRI name.
	if p, err := PodOfContainer(&specs.Spec{}, "c1"); err != nil || p.ID != "c1" || p.Name() != "c1" {
		t.Fatalf("standalone c1: %+v, %v", p, err)
	}
	if p, err := PodOfContainer(criContainer(), "c2"); err != nil || p.ID != "c2" || p.Name() != "app" {
		t.Fatalf("CRI c2: %+v, %v", p, err)
	}
}

// TestApplyCRIPod: a kubelet pod as containerd's CRI delivers it goes
// through, and the shim gets what it must do.
func TestApplyCRIPod(t *testing.T) {
	cfg := baseConfig("k8s.io")
	s := criSandbox()
	plan, err := applySpec(s, tSandboxID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := plan.State
	if st == nil || st.Identity != (PodIdentity{Namespace: "k8s.io", SandboxID: tSandboxID, Name: "web-0", PodNamespace: "default", UID: tUID}) {
		t.Fatalf("state %+v", st)
	}
	// The example: one container of 300m/700Mi runs at 0.5 core, 1 GiB.
	if st.Size.Pod != (Resources{500, GiB}) || st.SizeSource != "CRI" {
		t.Errorf("pod size %+v from %s", st.Size.Pod, st.SizeSource)
	}
	if st.CgroupParent != "/kubepods/burstable/pod"+tUID || s.Linux.CgroupsPath != st.CgroupParent+"/"+tSandboxID {
		t.Errorf("cgroup parent %q, path %q", st.CgroupParent, s.Linux.CgroupsPath)
	}
	if len(st.Namespaces) != 1 || !st.Namespaces[0].same(podNet) {
		t.Errorf("recorded namespaces %+v", st.Namespaces)
	}
	if plan.Shm != (ShmMount{tPodDir + "/shm", shm.DefaultSize}) || len(plan.Pins) != 1 ||
		plan.Pins[0] != (Pin{Root: "/var/lib/containerd", RootTrusted: true, Anchor: "io.containerd.grpc.v1.cri/sandboxes/" + tSandboxID,
			Rel: "io.containerd.grpc.v1.cri/sandboxes/" + tSandboxID + "/resolv.conf", Target: tPodDir + "/pins/" + tSandboxID + "/6"}) {
		t.Errorf("plan shm %+v pins %+v", plan.Shm, plan.Pins)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
		t.Errorf("runc backend: want containerd's default seccomp profile, got %+v", s.Linux.Seccomp)
	}
	if *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom_score_adj %d, want clamped to 0", *s.Process.OOMScoreAdj)
	}

	// The shim persists the state, records the sandbox's namespaces, and
	// passes it back for the app container.
	data, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalPodState(data)
	if err != nil {
		t.Fatal(err)
	}
	back.RecordNamespaces("", []NSRef{podNet, podIPC, podUTS, podPID})
	cfg.Pod = back
	c := criContainer()
	plan, err = applySpec(c, tContainerID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := c.Linux.Resources
	if *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.Memory.Limit != GiB {
		t.Errorf("container limits quota %d memory %d, want 0.5 core 1 GiB", *r.CPU.Quota, *r.Memory.Limit)
	}
	if c.Linux.CgroupsPath != "/kubepods/burstable/pod"+tUID+"/"+tContainerID {
		t.Errorf("cgroups path %q", c.Linux.CgroupsPath)
	}
	if plan.State == nil || plan.State.IncrementHolder != tContainerID || plan.State.Roots.Kubelet != tKubelet {
		t.Errorf("state after container: %+v", plan.State)
	}
	if len(plan.Pins) != 6 {
		t.Fatalf("pins %+v", plan.Pins)
	}
	for _, p := range plan.Pins {
		if !p.RootTrusted || !strings.HasPrefix(p.Rel, p.Anchor+"/") || !strings.HasPrefix(p.Target, tPodDir+"/pins/"+tContainerID+"/") {
			t.Errorf("pin %+v", p)
		}
	}
	for _, m := range c.Mounts {
		if m.Type == "bind" && m.Destination != "/dev/shm" && (!strings.HasPrefix(m.Source, tPodDir+"/pins/") || !slices.Contains(m.Options, "nodev")) {
			t.Errorf("bind not pinned: %+v", m)
		}
	}
	i := slices.IndexFunc(c.Mounts, func(m specs.Mount) bool { return m.Destination == "/data" })
	if want := "/kubernetes.io~empty-dir/volume"; !strings.HasSuffix(c.Mounts[i].Source, want) {
		t.Errorf("emptyDir pin %q does not keep %q for Kata", c.Mounts[i].Source, want)
	}
}

func TestApplyStandaloneCtr(t *testing.T) {
	cfg := baseConfig("tenant")
	for _, tc := range []struct {
		name  string
		opts  []oci.SpecOpts
		limit Resources
		pod   Resources
	}{
		{"no limits: the node default pod", nil, Resources{1000, 2 * GiB}, Resources{1000, 2 * GiB}},
		{"--cpus 0.3 --memory-limit 1Gi", []oci.SpecOpts{oci.WithCPUCFS(30000, 100000), oci.WithMemoryLimit(uint64(GiB))}, Resources{500, GiB}, Resources{500, GiB}},
		{"2 cores 1Gi: memory raised to 2 per core", []oci.SpecOpts{oci.WithCPUCFS(200000, 100000), oci.WithMemoryLimit(uint64(GiB))}, Resources{2000, 4 * GiB}, Resources{2000, 4 * GiB}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ctrSpec(t, "web", tc.opts...)
			plan, err := applySpec(s, "web", cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := s.Linux.Resources
			if plan.PodSize.Pod != tc.pod || *r.CPU.Quota != tc.limit.MilliCPU*100 || *r.Memory.Limit != tc.limit.Memory {
				t.Errorf("pod %+v quota %d memory %d", plan.PodSize.Pod, *r.CPU.Quota, *r.Memory.Limit)
			}
			if s.Linux.CgroupsPath != "/cci-shim/tenant/web" || plan.State.CgroupParent != "/cci-shim/tenant" {
				t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
			}
			if !isDenyAll(r.Devices[0]) || len(plan.Pins) != 0 || !plan.State.Identity.Standalone {
				t.Errorf("devices %+v pins %+v", r.Devices, plan.Pins)
			}
		})
	}
}

func TestApplyIsolatedBackend(t *testing.T) {
	cfg := baseConfig("tenant")
	cfg.Isolation = backend.IsolationVM
	s := ctrSpec(t, "admin", oci.WithAddedCapabilities([]string{"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}))
	if _, err := applySpec(s, "admin", cfg); err != nil {
		t.Fatalf("Kata: SYS_ADMIN refused: %v", err)
	}
	if s.Linux.Seccomp != nil {
		t.Errorf("seccomp added under a VM")
	}
	cfg.Isolation = backend.IsolationNone
	s = ctrSpec(t, "admin", oci.WithAddedCapabilities([]string{"CAP_SYS_ADMIN"}))
	_, err := applySpec(s, "admin", cfg)
	if err == nil || !strings.Contains(err.Error(), `process.capabilities "CAP_SYS_ADMIN" is not allowed (this node's backend runs containers on the host kernel (isolation none, e.g. runc)`) {
		t.Fatalf("runc: %v", err)
	}
	cfg.AllowHostRootCapabilities = true
	s = ctrSpec(t, "admin", oci.WithAddedCapabilities([]string{"CAP_SYS_ADMIN"}))
	plan, err := applySpec(s, "admin", cfg)
	if err != nil || len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], "INSECURE") || !strings.Contains(plan.Warnings[0], InsecureCapsOption) {
		t.Fatalf("insecure option: %v %+v", err, plan)
	}
}

func TestApplyInferredRoots(t *testing.T) {
	// kubelet --root-dir=/data/kubelet and containerd root /srv/containerd,
	// neither configured: recognised from the pod's own UID and ids.
	move := func(s *specs.Spec) *specs.Spec {
		for i, m := range s.Mounts {
			s.Mounts[i].Source = strings.Replace(strings.Replace(m.Source, tKubelet, "/data/kubelet", 1), "/var/lib/containerd", "/srv/containerd", 1)
		}
		return s
	}
	cfg := baseConfig("k8s.io")
	sb, err := applySpec(move(criSandbox()), tSandboxID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sb.State.RecordNamespaces("", []NSRef{podNet, podIPC, podUTS, podPID})
	cfg.Pod = sb.State
	plan, err := applySpec(move(criContainer()), tContainerID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plan.Pins {
		if p.RootTrusted || p.Root != "/data/kubelet" && p.Root != "/srv/containerd" {
			t.Errorf("pin %+v", p)
		}
	}
	got := RootMismatches(tKubelet, "/var/lib/containerd", "/run/containerd", []*PodState{plan.State})
	if len(got) != 2 || got[0].Key != "policy.containerd_root" || got[0].Observed != "/srv/containerd" || got[1].Observed != "/data/kubelet" {
		t.Errorf("mismatches %+v", got)
	}
}

func TestApplyShm(t *testing.T) {
	cfg := baseConfig("k8s.io")
	st := sandboxState(t, cfg)
	cfg.Pod = st
	c := criContainer()
	i := slices.IndexFunc(c.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev/shm" })
	c.Mounts[i] = kubeletBind("volumes/kubernetes.io~empty-dir/dshm", "/dev/shm", "rw")
	var asked Pin
	cfg.HostFS = func(p Pin) (int64, bool, error) { asked = p; return 256 * MiB, true, nil }
	plan, err := applySpec(c, tContainerID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Shm.Size != 256*MiB || asked.Rel != "pods/"+tUID+"/volumes/kubernetes.io~empty-dir/dshm" || !asked.RootTrusted {
		t.Errorf("shm %+v statfs %+v", plan.Shm, asked)
	}
	for _, tc := range []struct{ ann, wantErr string }{
		{"3Gi", "/dev/shm size 3 GiB (from annotation shm.cci.io/size) is larger than the pod memory 1 GiB; allowed: at most the pod memory (half of it is advised)"},
		{"big", `annotation shm.cci.io/size "big" is not allowed (not a positive memory quantity)`},
	} {
		s := criSandbox()
		s.Annotations[AnnotationShmSize] = tc.ann
		if _, err := applySpec(s, tSandboxID, baseConfig("k8s.io")); err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("shm %s: %v", tc.ann, err)
		}
	}
}

func TestApplyRequiresIdentity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      string
		mut     func(*specs.Spec, *Config)
		wantErr string
	}{
		{"no container id", "", nil, "container id not set"},
		{"container id with a slash", "a/../b", nil, `container id "a/../b" is not allowed (not a containerd identifier)`},
		{"no namespace", tSandboxID, func(_ *specs.Spec, c *Config) { c.Namespace = "" }, "containerd namespace"},
		{"sandbox id is not the container's", tOtherID, nil, "a sandbox's id is the container's own id"},
		{"CRI ids are 64 hex", "sb1", func(s *specs.Spec, _ *Config) { s.Annotations[AnnotationSandboxID] = "sb1" }, "CRI's sandbox and container ids are 64 hex digits"},
		{"UID must be a UUID", tSandboxID, func(s *specs.Spec, _ *Config) { s.Annotations[AnnotationSandboxUID] = "../../etc" }, `annotation io.kubernetes.cri.sandbox-uid "../../etc" is not allowed; allowed: a pod UID`},
		{"pod name with newline", tSandboxID, func(s *specs.Spec, _ *Config) { s.Annotations[AnnotationSandboxName] = "a\nb" }, "a Kubernetes name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, cfg := criSandbox(), baseConfig("k8s.io")
			if tc.mut != nil {
				tc.mut(s, &cfg)
			}
			if _, err := applySpec(s, tc.id, cfg); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestDecodeSpecStrict(t *testing.T) {
	if _, err := DecodeSpec([]byte(`{"ociVersion":"1.2.0","root":{"path":"rootfs"}}`)); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		`{"ociVersion":"1.2.0","linux":{"futureIsolationKnob":true}}`,
		`{"ociVersion":"1.2.0","process":{"cwd":"/","user":{"uid":0,"gid":0},"capabilities":{"everything":["x"]}}}`,
		`{"ociVersion":"1.2.0"} {}`,
	} {
		if _, err := DecodeSpec([]byte(in)); err == nil || !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v", in, err)
		}
	}
}

func TestKnownFieldsCoverRuntimeSpec(t *testing.T) {
	// Every entry of knownFields names a field runtime-spec has: a renamed
	// or dropped field fails here, not silently in production.
	for p := range knownFields {
		if !specHasPath(p) {
			t.Errorf("knownFields has %q, which runtime-spec %s does not", p, specs.Version)
		}
	}
}

func TestClampOOMScoreAdj(t *testing.T) {
	for _, tc := range []struct{ v, floor, want int }{
		{-998, 0, 0}, {-998, -1000, -998}, {500, 0, 500}, {-5, -10, -5}, {2000, 0, 1000}, {-2000, -2000, -1000}, {0, 300, 300},
	} {
		if got := ClampOOMScoreAdj(tc.v, tc.floor); got != tc.want {
			t.Errorf("ClampOOMScoreAdj(%d, %d) = %d, want %d", tc.v, tc.floor, got, tc.want)
		}
	}
}

// TestPinDir: the shim keeps pin mount points on the state tmpfs, apart
// from the pod's disk-backed volumes; a relative pin dir is refused.
func TestPinDir(t *testing.T) {
	cfg := baseConfig("k8s.io")
	cfg.PinDir = "/run/cci-shim/k8s.io/" + tSandboxID + "/pins"
	s := criSandbox()
	plan, err := applySpec(s, tSandboxID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Pins) != 1 || plan.Pins[0].Target != cfg.PinDir+"/"+tSandboxID+"/6" {
		t.Fatalf("pins %+v, want one under %s", plan.Pins, cfg.PinDir)
	}
	i := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/etc/resolv.conf" })
	if i < 0 || s.Mounts[i].Source != plan.Pins[0].Target {
		t.Errorf("resolv.conf mount %+v, want the pin %s", s.Mounts, plan.Pins[0].Target)
	}
	if plan.Shm.Path != tPodDir+"/shm" {
		t.Errorf("shm %s moved with the pins", plan.Shm.Path)
	}
	cfg.PinDir = "pins"
	if _, err := applySpec(criSandbox(), tSandboxID, cfg); err == nil || !strings.Contains(err.Error(), `pin dir "pins"`) {
		t.Errorf("relative pin dir: %v", err)
	}
}
