package sandbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/shm"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var allCaps = append(append([]string{}, privilegedCaps...), "CAP_CHOWN", "CAP_KILL")

// criSpec is a minimal unprivileged CRI-like spec.
func criSpec(typ ContainerType, ann map[string]string) *specs.Spec {
	a := map[string]string{AnnotationContainerType: string(typ), AnnotationSandboxID: "sb1",
		AnnotationSandboxUID: "uid-1", AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default"}
	netns := "/var/run/netns/cni-1"
	if typ == TypeContainer {
		a[AnnotationContainerName] = "app"
		netns = "/proc/4242/ns/net"
	}
	for k, v := range ann {
		a[k] = v
	}
	adj := -998
	return &specs.Spec{
		Annotations: a,
		Process:     &specs.Process{Args: []string{"/pause"}, OOMScoreAdj: &adj, Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}},
		Mounts: []specs.Mount{
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "ro"}},
			bind("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm", "/dev/shm", "ro"),
		},
		Linux: &specs.Linux{
			Namespaces:  []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "network", Path: netns}, {Type: "mount"}},
			MaskedPaths: []string{"/proc/kcore"},
		},
	}
}

func TestCheckRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mut     func(*specs.Spec)
		wantErr string
	}{
		{name: "ordinary"},
		{name: "SYS_ADMIN allowed", mut: func(s *specs.Spec) { s.Process.Capabilities.Bounding = []string{"CAP_SYS_ADMIN"} }},
		{name: "all caps with masked paths allowed", mut: func(s *specs.Spec) { s.Process.Capabilities.Bounding = allCaps }},
		{name: "all caps no masks", mut: func(s *specs.Spec) { s.Process.Capabilities.Bounding = allCaps; s.Linux.MaskedPaths = nil },
			wantErr: `container "app": privileged "true" is not allowed (all capabilities with no masked or read-only paths); allowed: unprivileged containers with fine-grained capabilities (e.g. CAP_SYS_ADMIN)`},
		{name: "rw sys", mut: func(s *specs.Spec) { s.Mounts[0].Options = []string{"nosuid", "rw"} }, wantErr: "/sys mounted read-write"},
		{name: "all devices", mut: func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}}
		}, wantErr: "access to all devices"},
		{name: "one device ok", mut: func(s *specs.Spec) {
			major := int64(195)
			s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: &major, Access: "rw"}}}
		}},
		{name: "host network", mut: func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[:2] },
			wantErr: `linux.namespaces.network "host" is not allowed (host network namespace)`},
		{name: "host pid", mut: func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }, wantErr: "host pid namespace"},
		{name: "host ipc by path", mut: func(s *specs.Spec) { s.Linux.Namespaces[1].Path = "/proc/1/ns/ipc" }, wantErr: `"/proc/1/ns/ipc"`},
		{name: "host net via self", mut: func(s *specs.Spec) { s.Linux.Namespaces[2].Path = "/proc//self/ns/net" }, wantErr: "host network"},
		{name: "sandbox pid ns allowed", mut: func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "/proc/10/ns/pid" }},
		{name: "no linux section", mut: func(s *specs.Spec) { s.Linux = nil }, wantErr: "host network"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := criSpec(TypeContainer, nil)
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
	p, err := PodFromSpec(criSpec(TypeContainer, nil))
	if err != nil || p.Type != TypeContainer || p.SandboxID != "sb1" || p.UID != "uid-1" || p.Name() != "app" || p.IsSandbox() {
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
}

func fakeFS(size int64) func(string) (int64, bool, error) {
	return func(string) (int64, bool, error) { return size, true, nil }
}

func TestApply(t *testing.T) {
	res := `[{"name":"app","limits":{"cpu":"300m","memory":"1Gi"}},{"name":"side","requests":{"cpu":"100m"}}]`
	for _, tc := range []struct {
		name    string
		typ     ContainerType
		ann     map[string]string
		mut     func(*specs.Spec)
		cfg     Config
		wantErr string
		check   func(*testing.T, *specs.Spec, *Plan)
	}{
		{name: "sandbox defaults", typ: TypeSandbox, check: func(t *testing.T, s *specs.Spec, p *Plan) {
			if p.PodSize.Pod != (Resources{1000, 2 * GiB}) || p.Shm != (ShmMount{"/run/cci/sb1/shm", shm.DefaultSize}) {
				t.Errorf("plan %+v", p)
			}
			m := s.Mounts[1]
			if m.Source != "/run/cci/sb1/shm" || m.Type != "bind" || m.Options[len(m.Options)-1] != "ro" {
				t.Errorf("shm mount %+v", m)
			}
			if *s.Process.OOMScoreAdj != 0 {
				t.Errorf("oom %d", *s.Process.OOMScoreAdj)
			}
		}},
		{name: "sandbox from CRI annotations", typ: TypeSandbox,
			ann: map[string]string{AnnotationSandboxCPUQuota: "150000", AnnotationSandboxCPUPeriod: "100000", AnnotationSandboxMemory: "1073741824"},
			check: func(t *testing.T, s *specs.Spec, p *Plan) {
				if p.PodSize.Pod != (Resources{1500, 3 * GiB}) {
					t.Errorf("pod %+v", p.PodSize.Pod)
				}
			}},
		{name: "container limits written", typ: TypeContainer, ann: map[string]string{AnnotationContainers: res},
			check: func(t *testing.T, s *specs.Spec, p *Plan) {
				r := s.Linux.Resources
				if p.PodSize.Pod != (Resources{750, 2 * GiB}) || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 || *r.Memory.Limit != 2*GiB-minMemory {
					t.Errorf("pod %+v resources %+v %+v", p.PodSize.Pod, *r.CPU, *r.Memory)
				}
			}},
		{name: "container without annotation left alone", typ: TypeContainer, check: func(t *testing.T, s *specs.Spec, p *Plan) {
			if p.PodSize != nil || s.Linux.Resources != nil {
				t.Errorf("plan %+v", p)
			}
		}},
		{name: "shm from emptyDir", typ: TypeContainer, cfg: Config{HostFS: fakeFS(256 * MiB)},
			mut: func(s *specs.Spec) {
				s.Mounts[1] = bind("/var/lib/kubelet/pods/uid-1/volumes/kubernetes.io~empty-dir/dshm", "/dev/shm")
			}, check: func(t *testing.T, s *specs.Spec, p *Plan) {
				if p.Shm.Size != 256*MiB || s.Mounts[1].Source != "/run/cci/sb1/shm" || len(p.Dirs) != 0 {
					t.Errorf("plan %+v mount %+v", p, s.Mounts[1])
				}
			}},
		{name: "shm annotation", typ: TypeSandbox, ann: map[string]string{AnnotationShmSize: "128Mi"},
			check: func(t *testing.T, s *specs.Spec, p *Plan) {
				if p.Shm.Size != 128*MiB {
					t.Errorf("shm %+v", p.Shm)
				}
			}},
		{name: "shm larger than pod", typ: TypeSandbox, ann: map[string]string{AnnotationShmSize: "3Gi"},
			wantErr: "/dev/shm size 3 GiB (from annotation shm.cci.io/size) is larger than the pod memory 2 GiB; allowed: at most the pod memory (half of it is advised)"},
		{name: "shm annotation malformed", typ: TypeSandbox, ann: map[string]string{AnnotationShmSize: "big"},
			wantErr: `annotation shm.cci.io/size "big" is not allowed (not a positive memory quantity)`},
		{name: "standalone tmpfs shm and own resources", typ: TypeStandalone,
			mut: func(s *specs.Spec) {
				s.Annotations = nil
				s.Mounts[1] = specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"size=65536k"}}
				q, p, l := int64(200000), uint64(100000), int64(GiB)
				s.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &q, Period: &p}, Memory: &specs.LinuxMemory{Limit: &l}}
			}, check: func(t *testing.T, s *specs.Spec, p *Plan) {
				if p.PodSize.Pod != (Resources{2000, 4 * GiB}) || *s.Linux.Resources.Memory.Limit != 4*GiB || s.Mounts[1].Type != "bind" {
					t.Errorf("plan %+v mounts %+v", p.PodSize, s.Mounts)
				}
			}},
		{name: "sysctl refused", typ: TypeContainer, mut: func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.netfilter.nf_conntrack_max": "1"} },
			wantErr: `sysctl "net.netfilter.nf_conntrack_max" is not allowed`},
		{name: "oom floor kept", typ: TypeSandbox, cfg: Config{OOMScoreAdjFloor: 100}, check: func(t *testing.T, s *specs.Spec, p *Plan) {
			if *s.Process.OOMScoreAdj != 100 {
				t.Errorf("oom %d", *s.Process.OOMScoreAdj)
			}
		}},
		{name: "bad resources annotation", typ: TypeContainer, ann: map[string]string{AnnotationContainers: `[{"name":"app","limits":{"cpu":"x"}}]`},
			wantErr: `container "app" limits: quantity "x"`},
		{name: "pod too big", typ: TypeSandbox, ann: map[string]string{AnnotationContainers: `[{"name":"a","limits":{"cpu":"40","memory":"100Gi"}}]`},
			wantErr: `pod CPU "40 cores" is not allowed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := criSpec(tc.typ, tc.ann)
			if tc.typ == TypeStandalone {
				s.Annotations = nil
			}
			if tc.mut != nil {
				tc.mut(s)
			}
			pod, err := PodFromSpec(s)
			if err != nil {
				t.Fatal(err)
			}
			cfg := tc.cfg
			cfg.PodDir = "/run/cci/sb1"
			plan, err := Apply(s, pod, cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s, plan)
		})
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
