package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestAttacks has one case per attack class of issue 9 that the policy core
// stops (items 11, logs, belong to logfwd; the I/O halves of items 4 and 12
// are in pin_linux_test.go and prepare_linux_test.go). Each case starts from
// a legitimate spec, which passes, and changes what a hostile tenant
// controls: the spec fields CRI or the containerd API produce, annotations,
// names and UIDs.
func TestAttacks(t *testing.T) {
	type target int
	const (
		sandbox target = iota
		container
		ctr
	)
	for _, tc := range []struct {
		item    string
		name    string
		on      target
		mut     func(*specs.Spec, *Config)
		wantErr string // "" = accepted, and check says what made it harmless
		check   func(*testing.T, *specs.Spec, *Plan)
	}{
		{item: "1", name: "CRI device: the host loop device", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/loop0", Type: "b", Major: 7, Minor: 0})
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Major: i64(7), Minor: i64(0), Access: "rwm"})
		}, wantErr: `linux.devices "/dev/loop0 b 7:0" is not allowed; allowed: the OCI default devices`},
		{item: "1", name: "device rule alone: any block device", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: "b", Access: "rw"})
		}, wantErr: `linux.resources.devices "allow b *:* rw" is not allowed (allows a device)`},
		{item: "1", name: "device disguised as /dev/null's path", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/null", Type: "c", Major: 10, Minor: 232}} // /dev/kvm
		}, wantErr: `linux.devices "/dev/null c 10:232" is not allowed`},
		{item: "1", name: "rules without deny-all get it first", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Resources.Devices = s.Linux.Resources.Devices[1:]
		}, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			if !isDenyAll(s.Linux.Resources.Devices[0]) {
				t.Errorf("rules %+v", s.Linux.Resources.Devices)
			}
		}},

		{item: "2", name: "masked and read-only paths replaced by nonexistent ones", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = []string{"/nonexistent"}, []string{"/nonexistent"}
		}, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			for _, d := range DefaultMaskedPaths {
				if !slices.Contains(s.Linux.MaskedPaths, d) {
					t.Errorf("masked paths %v lack %s", s.Linux.MaskedPaths, d)
				}
			}
			if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
				t.Errorf("read-only paths %v lack /proc/sys", s.Linux.ReadonlyPaths)
			}
		}},
		{item: "2", name: "unmasked proc (procMount: Unmasked) gets the defaults back", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = []string{}, []string{}
		}, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			if len(s.Linux.MaskedPaths) != len(DefaultMaskedPaths) || len(s.Linux.ReadonlyPaths) != len(DefaultReadonlyPaths) {
				t.Errorf("masked %v read-only %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
			}
		}},

		{item: "3", name: "pod UID with ..", on: sandbox, mut: func(s *specs.Spec, _ *Config) {
			s.Annotations[AnnotationSandboxUID] = "../../../../tmp"
		}, wantErr: `annotation io.kubernetes.cri.sandbox-uid "../../../../tmp" is not allowed`},
		{item: "3", name: "hostPath laid out as a kubelet pod dir of this pod", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, bind("/tmp/x/pods/"+tUID+"/volumes/kubernetes.io~empty-dir/v", "/v"))
		}, wantErr: "differs from /var/lib/kubelet, seen earlier for this pod"},
		{item: "3", name: "kubelet dir inside another pod's volume", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, bind(tKubelet+"/pods/"+tOtherUID+"/volumes/kubernetes.io~empty-dir/d/pods/"+tUID+"/volumes/kubernetes.io~secret/s", "/s"))
		}, wantErr: "inside another pod's directory"},
		{item: "3", name: "kubelet layout under /proc", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, bind("/proc/1/root/var/lib/kubelet/pods/"+tUID+"/volumes/kubernetes.io~secret/s", "/s"))
		}, wantErr: "under /proc"},
		{item: "3", name: "CRI ids are not paths", on: sandbox, mut: func(s *specs.Spec, _ *Config) {
			s.Annotations[AnnotationSandboxID] = "../" + tSandboxID
		}, wantErr: "not a containerd identifier"},

		{item: "4", name: "bind source inside the pod's own shm", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, bind(tPodDir+"/shm/x", "/x"))
		}, wantErr: `hostPath volume "` + tPodDir + `/shm/x" is not allowed`},
		{item: "4", name: "every platform bind is pinned nodev", on: container, check: func(t *testing.T, s *specs.Spec, p *Plan) {
			n := 0
			for _, m := range s.Mounts {
				if strings.HasPrefix(m.Source, tPodDir+"/pins/") {
					n++
					if !slices.Contains(m.Options, "nodev") {
						t.Errorf("%+v not nodev", m)
					}
				}
			}
			if n != len(p.Pins) || n != 6 {
				t.Errorf("%d pinned mounts, %d pins", n, len(p.Pins))
			}
		}},

		{item: "5", name: "cgroupsPath of another container", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.CgroupsPath = "/kubepods/burstable/pod" + tOtherUID + "/" + tOtherID
		}, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			if want := "/kubepods/burstable/pod" + tUID + "/" + tContainerID; s.Linux.CgroupsPath != want {
				t.Errorf("cgroups path %q, want %q", s.Linux.CgroupsPath, want)
			}
		}},
		{item: "5", name: "ctr --cgroup of kubelet's QoS cgroup", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.CgroupsPath = "/kubepods/burstable"
		}, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			if s.Linux.CgroupsPath != "/cci-shim/tenant/web" {
				t.Errorf("cgroups path %q", s.Linux.CgroupsPath)
			}
		}},
		{item: "5", name: "sandbox with another pod's kubelet cgroup", on: sandbox, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.CgroupsPath = "/kubepods/burstable/pod" + tOtherUID + "/" + tSandboxID
		}, check: func(t *testing.T, s *specs.Spec, p *Plan) {
			if want := "/cci-shim/k8s.io/pod-" + tSandboxID + "/" + tSandboxID; s.Linux.CgroupsPath != want {
				t.Errorf("cgroups path %q, want %q", s.Linux.CgroupsPath, want)
			}
		}},
		{item: "5", name: "unified cgroup file io.max", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Resources.Unified = map[string]string{"io.max": "7:0 rbps=max"}
		}, wantErr: `linux.resources.unified "io.max=7:0 rbps=max" is not allowed`},

		{item: "6", name: "annotation raises a 256Mi container to 16Gi", on: sandbox, mut: func(s *specs.Spec, _ *Config) {
			s.Annotations[AnnotationSandboxMemory] = fmt.Sprint(256 * MiB)
			s.Annotations[AnnotationContainers] = `[{"name":"app","limits":{"cpu":"300m","memory":"16Gi"}}]`
		}, wantErr: `annotation resources.cci.io/containers "pod memory limit 16 GiB" is not allowed (the pod memory limit is 256 MiB as CRI set it)`},
		{item: "6", name: "annotation moves a limit between containers", on: container, mut: func(s *specs.Spec, c *Config) {
			c.Pod.Described = []ContainerResources{{Name: "app", Limits: Resources{300, 16 * GiB}}, {Name: "side", Limits: Resources{0, 256 * MiB}}}
			c.Pod.Size.Containers = []NormalisedContainer{{Name: "app"}, {Name: "side"}}
		}, wantErr: `annotation resources.cci.io/containers "memory limit 16 GiB" is not allowed (container "app"'s memory limit is 700 MiB as CRI set it)`},
		{item: "6", name: "a container the annotation does not list (kubectl debug) keeps its own limits, within the pod", on: container, mut: func(s *specs.Spec, c *Config) {
			c.Pod.Described = []ContainerResources{{Name: "other", Limits: Resources{300, 700 * MiB}}}
			c.Pod.Size.Containers = []NormalisedContainer{{Name: "other"}}
			mem := int64(64 * GiB)
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &mem}
		}, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			if r := s.Linux.Resources; *r.CPU.Quota != 50000 || *r.Memory.Limit != GiB {
				t.Errorf("quota %d memory %d, want its own 300m rounded (0.5 core) and its 64 GiB capped at the pod's 1 GiB", *r.CPU.Quota, *r.Memory.Limit)
			}
		}},
		{item: "6", name: "a container without limits gets the pod's", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Resources.CPU, s.Linux.Resources.Memory = &specs.LinuxCPU{Shares: u64(2)}, nil
		}, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			if r := s.Linux.Resources; *r.CPU.Quota != 50000 || *r.Memory.Limit != GiB {
				t.Errorf("quota %d memory %d, want the pod's 0.5 core, 1 GiB", *r.CPU.Quota, *r.Memory.Limit)
			}
		}},

		{item: "7", name: "proc elsewhere: writable host sysctls", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/hostproc", Type: "proc", Source: "proc"})
		}, wantErr: `mount /hostproc "proc" is not allowed (proc is mounted only at /proc)`},
		{item: "7", name: "cgroup read-write", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts[5].Options = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
		}, wantErr: "cgroupfs only read-only at /sys/fs/cgroup"},
		{item: "7", name: "overlay with host lowerdirs", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/h", Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/etc:/root"}})
		}, wantErr: `mount type "overlay" is not allowed (mounted at /h)`},
		{item: "7", name: "root.path a host directory", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Root.Path = "/"
		}, wantErr: `root.path "/" is not allowed; allowed: "rootfs"`},
		{item: "7", name: "bind onto /proc/sys", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, kubeletBind("volumes/kubernetes.io~empty-dir/data", "/proc/sys", "rw"))
		}, wantErr: "a bind onto /, /dev, /proc or /sys"},
		{item: "7", name: "bidirectional propagation", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, kubeletBind("volumes/kubernetes.io~empty-dir/data", "/m", "rshared"))
		}, wantErr: `mount /m option "rshared" is not allowed`},
		{item: "7", name: "devpts sharing the host's instance", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts[2].Options = []string{"nosuid", "noexec"}
		}, wantErr: "devpts only as a new instance at /dev/pts"},

		{item: "8", name: "host network through /proc/2", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Namespaces[4].Path = "/proc/2/ns/net"
		}, wantErr: `linux.namespaces.network "/proc/2/ns/net" is not allowed (host network namespace)`},
		{item: "8", name: "another pod's network namespace", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Namespaces[4].Path = "/proc/5000/ns/net"
		}, wantErr: "not a namespace of this pod's sandbox"},
		{item: "8", name: "sandbox joining a process's namespace", on: sandbox, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Namespaces[4].Path = "/proc/2/ns/net"
		}, wantErr: "a sandbox joins only a pre-created network namespace file"},
		{item: "8", name: "sandbox joining the host netns by a bind-mounted file", on: sandbox, mut: func(s *specs.Spec, c *Config) {
			c.Namespaces.(fakeResolver)["/run/netns/host"] = hostNS[0]
			s.Linux.Namespaces[4].Path = "/run/netns/host"
		}, wantErr: "host network namespace"},
		{item: "8", name: "ctr joining any namespace", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Namespaces[4].Path = tNetns
		}, wantErr: "a pod's sandbox starts in new namespaces"},
		{item: "8", name: "user namespace with host mappings", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "user"})
		}, wantErr: `linux.namespaces "user" is not allowed`},
		{item: "8", name: "a container joining the sandbox's mount namespace", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Namespaces[3].Path = fmt.Sprintf("/proc/%d/ns/mnt", tPausePID)
		}, wantErr: "a container gets a mount namespace of its own"},

		{item: "10", name: "ctr container claiming a CRI pod it is not part of", on: container, mut: func(s *specs.Spec, c *Config) {
			c.Pod.Identity.UID = tOtherUID
		}, wantErr: "the container's pod identity differs from the one its sandbox recorded"},
		{item: "10", name: "a container of a pod whose state the shim lacks", on: container, mut: func(s *specs.Spec, c *Config) {
			c.Pod = nil
		}, wantErr: "the pod's state is not known"},
		{item: "10", name: "same identity, another containerd namespace", on: container, mut: func(s *specs.Spec, c *Config) {
			c.Namespace = "tenant"
		}, wantErr: "the container's pod identity differs"},

		{item: "12", name: "CRI image volume of this pod is not a hostPath", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, bind(tCRIState+"/image-volumes/"+tSandboxID+"/sha256-abc", "/models", "ro"))
		}, check: func(t *testing.T, s *specs.Spec, p *Plan) {
			if last := p.Pins[len(p.Pins)-1]; last.Rel != "io.containerd.grpc.v1.cri/image-volumes/"+tSandboxID+"/sha256-abc" || last.Root != "/run/containerd" {
				t.Errorf("pin %+v", last)
			}
		}},
		{item: "12", name: "another pod's CRI image volume", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Mounts = append(s.Mounts, bind(tCRIState+"/image-volumes/"+tOtherID+"/sha256-abc", "/models", "ro"))
		}, wantErr: "belongs to another CRI sandbox or container"},

		{item: "13", name: "CAP_SYS_ADMIN on runc", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
		}, wantErr: `process.capabilities "CAP_SYS_ADMIN" is not allowed`},
		{item: "13", name: "CAP_DAC_READ_SEARCH in the ambient set", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Process.Capabilities.Ambient = []string{"CAP_DAC_READ_SEARCH"}
		}, wantErr: `process.capabilities "CAP_DAC_READ_SEARCH" is not allowed`},
		{item: "13", name: "seccomp removed on runc gets the default profile", on: container, check: func(t *testing.T, s *specs.Spec, _ *Plan) {
			if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
				t.Errorf("seccomp %+v", s.Linux.Seccomp)
			}
		}},
		{item: "13", name: "seccomp allowing by default on runc", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
		}, wantErr: `linux.seccomp.defaultAction "SCMP_ACT_ALLOW" is not allowed`},
		{item: "13", name: "spc_t SELinux label", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Process.SelinuxLabel = "system_u:system_r:spc_t:s0"
		}, wantErr: `process.selinuxLabel "system_u:system_r:spc_t:s0" is not allowed`},
		{item: "13", name: "AppArmor unconfined on runc", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Process.ApparmorProfile = "unconfined"
		}, wantErr: `process.apparmorProfile "unconfined" is not allowed`},
		{item: "13", name: "real-time priority rlimit on runc", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_RTPRIO", Hard: 99, Soft: 99})
		}, wantErr: "real-time priority on a backend that shares the host kernel"},

		{item: "24", name: "hooks from a tenant", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "rm -rf /"}}}}
		}, wantErr: `hooks "`},
		{item: "24", name: "Kata configuration annotation", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Annotations = map[string]string{"io.katacontainers.config.hypervisor.path": "/tmp/evil"}
		}, wantErr: `annotation "io.katacontainers.config.hypervisor.path" is not allowed`},
		{item: "24", name: "the shim's own VFIO CDI annotation", on: container, mut: func(s *specs.Spec, _ *Config) {
			s.Annotations["cdi.k8s.io/vfio0"] = "vfio.example/device=0000:3b:00.0"
		}, wantErr: `annotation "cdi.k8s.io/vfio0" is not allowed`},
		{item: "24", name: "host network devices moved in", on: ctr, mut: func(s *specs.Spec, _ *Config) {
			s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth0": {Name: "eth0"}}
		}, wantErr: `linux.netDevices "`},
	} {
		t.Run(tc.item+": "+tc.name, func(t *testing.T) {
			var s *specs.Spec
			var id string
			cfg := baseConfig("k8s.io")
			cfg.Namespaces = testResolver()
			switch tc.on {
			case sandbox:
				s, id = criSandbox(), tSandboxID
			case container:
				cfg.Pod = sandboxState(t, cfg)
				s, id = criContainer(), tContainerID
			case ctr:
				cfg.Namespace = "tenant"
				s, id = ctrSpec(t, "web", oci.WithCPUCFS(30000, 100000)), "web"
			}
			if tc.mut != nil {
				tc.mut(s, &cfg)
			}
			plan, err := applySpec(s, id, cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v\nwant %q", err, tc.wantErr)
				}
				var pe *PolicyError
				if !errors.As(err, &pe) && !errors.Is(err, errdefs.ErrFailedPrecondition) {
					t.Errorf("not a tenant-facing PolicyError: %T %v", err, err)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, s, plan)
			}
		})
	}
}

// TestExecAttacks: item 9, exec processes.
func TestExecAttacks(t *testing.T) {
	cfg := baseConfig("k8s.io")
	cfg.Pod = sandboxState(t, cfg)
	c := criContainer()
	c.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 10}}
	c.Process.NoNewPrivileges = true
	c.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 1024}}
	if _, err := applySpec(c, tContainerID, cfg); err != nil {
		t.Fatal(err)
	}
	exec := func() *specs.Process {
		p := *c.Process
		p.Args = []string{"sh"}
		p.Capabilities = &specs.LinuxCapabilities{Bounding: clone(c.Process.Capabilities.Bounding), Effective: clone(c.Process.Capabilities.Effective),
			Permitted: clone(c.Process.Capabilities.Permitted)}
		return &p
	}
	if err := CheckExec("app", c, exec(), cfg); err != nil {
		t.Fatalf("kubectl exec's process (a copy of the container's): %v", err)
	}
	narrower := exec()
	narrower.Capabilities.Effective = narrower.Capabilities.Effective[:2]
	if err := CheckExec("app", c, narrower, cfg); err != nil {
		t.Fatalf("narrower exec: %v", err)
	}
	for _, tc := range []struct {
		name    string
		mut     func(*specs.Process)
		wantErr string
	}{
		{"full capability set through the containerd API", func(p *specs.Process) {
			p.Capabilities.Effective = append(p.Capabilities.Effective, "CAP_NET_ADMIN")
		}, `exec process.capabilities.effective "CAP_NET_ADMIN" is not allowed (wider than the container's)`},
		{"host-root capability", func(p *specs.Process) { p.Capabilities.Bounding = append(p.Capabilities.Bounding, "CAP_SYS_MODULE") }, "CAP_SYS_MODULE"},
		{"ambient capability the container lacks", func(p *specs.Process) { p.Capabilities.Ambient = []string{"CAP_CHOWN"} }, "capabilities.ambient"},
		{"root in a non-root container", func(p *specs.Process) { p.User = specs.User{} }, `exec process.user "0:0" is not allowed`},
		{"extra group", func(p *specs.Process) { p.User.AdditionalGids = []uint32{0} }, "additionalGids"},
		{"rlimit raised", func(p *specs.Process) {
			p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 65536, Soft: 65536}}
		}, "process.rlimits"},
		{"new rlimit type", func(p *specs.Process) { p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_MEMLOCK", Hard: 1 << 30}} }, "process.rlimits"},
		{"privileges regained", func(p *specs.Process) { p.NoNewPrivileges = false }, "noNewPrivileges"},
		{"apparmor dropped", func(p *specs.Process) { p.ApparmorProfile = "unconfined" }, "apparmorProfile"},
		{"selinux changed", func(p *specs.Process) { p.SelinuxLabel = "system_u:system_r:container_t:s0:c1,c2" }, "selinuxLabel"},
		{"real-time scheduler on runc", func(p *specs.Process) { p.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO, Priority: 99} }, "real-time scheduling"},
		{"windows field", func(p *specs.Process) { p.CommandLine = "cmd.exe" }, `process.commandLine "`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := exec()
			tc.mut(p)
			err := CheckExec("app", c, p, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	p := exec()
	p.OOMScoreAdj = intp(-1000)
	if err := CheckExec("app", c, p, cfg); err != nil || *p.OOMScoreAdj != *c.Process.OOMScoreAdj {
		t.Errorf("oom_score_adj %d (%v), want the container's %d", *p.OOMScoreAdj, err, *c.Process.OOMScoreAdj)
	}
	if _, err := DecodeProcess([]byte(`{"cwd":"/","user":{"uid":0,"gid":0},"hooks":[]}`)); err == nil {
		t.Error("unknown exec field decoded")
	}
}
