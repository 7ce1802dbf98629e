package sandbox

import (
	"context"
	"fmt"
	"testing"

	"github.com/cci-shim/cci-shim/sandbox/backend"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Fixtures: specs as containerd 2.4's CRI writes them for kubelet's pods
// (read from internal/cri/server/podsandbox/sandbox_run_linux.go and
// internal/cri/server/container_create*.go, cgroup v1, cgroupfs driver), and
// as ctr writes them (generated with containerd's own pkg/oci).

const (
	tSandboxID   = "5f2c0b9d8e7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e"
	tContainerID = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	tOtherID     = "0000000000000000000000000000000000000000000000000000000000000bad"
	tUID         = "0b6c7a52-3c1d-4c7e-9a0e-5d2f8b1e4a77"
	tOtherUID    = "9f1e2d3c-4b5a-4968-8776-655443322110"
	tKubelet     = "/var/lib/kubelet"
	tCRIRoot     = "/var/lib/containerd/io.containerd.grpc.v1.cri"
	tCRIState    = "/run/containerd/io.containerd.grpc.v1.cri"
	tNetns       = "/var/run/netns/cni-4c1f6a2e-9b7d-4e3a-8f5c-2d1e0b9a8c7f"
	tPausePID    = 4242
	tPodDir      = "/var/lib/cci-shim/pods/k8s.io/" + tSandboxID
)

// namespace inodes: host's, the pod's sandbox, another pod's
var (
	hostNS = []NSRef{{Type: "network", Dev: 4, Ino: 4026531840}, {Type: "pid", Dev: 4, Ino: 4026531836},
		{Type: "ipc", Dev: 4, Ino: 4026531839}, {Type: "uts", Dev: 4, Ino: 4026531838},
		{Type: "mount", Dev: 4, Ino: 4026531841}, {Type: "cgroup", Dev: 4, Ino: 4026531835}}
	podNet   = NSRef{Type: "network", Dev: 4, Ino: 4026532500}
	podIPC   = NSRef{Type: "ipc", Dev: 4, Ino: 4026532501}
	podUTS   = NSRef{Type: "uts", Dev: 4, Ino: 4026532502}
	podPID   = NSRef{Type: "pid", Dev: 4, Ino: 4026532503}
	otherNet = NSRef{Type: "network", Dev: 4, Ino: 4026532900}
)

// fakeResolver maps paths to namespaces, like ProcResolver on a node where
// the pod's pause process is tPausePID and pid 2 is a host kernel thread.
type fakeResolver map[string]NSRef

func (f fakeResolver) Resolve(p string) (NSRef, error) {
	if r, ok := f[p]; ok {
		return r, nil
	}
	return NSRef{}, fmt.Errorf("%s: no such file", p)
}

func testResolver() fakeResolver {
	r := fakeResolver{tNetns: podNet, "/var/run/netns/cni-other": otherNet}
	for _, h := range hostNS {
		n := procNSName(h.Type)
		r["/proc/1/ns/"+n], r["/proc/2/ns/"+n], r["/proc/self/ns/"+n] = h, h, h
	}
	for _, p := range []NSRef{podNet, podIPC, podUTS, podPID} {
		r[fmt.Sprintf("/proc/%d/ns/%s", tPausePID, procNSName(p.Type))] = p
	}
	r["/proc/5000/ns/net"] = otherNet
	return r
}

var defaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

func i64(v int64) *int64     { return &v }
func u64(v uint64) *uint64   { return &v }
func intp(v int) *int        { return &v }
func clone[T any](v []T) []T { return append([]T(nil), v...) }

func defaultKernelMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
}

// criSandbox is the pause container's spec of a kubelet pod (300m/700Mi,
// request 300m).
func criSandbox() *specs.Spec {
	return &specs.Spec{
		Version:  specs.Version,
		Hostname: "web-0",
		Process: &specs.Process{User: specs.User{UID: 65535, GID: 65535}, Args: []string{"/pause"},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Cwd: "/",
			Capabilities:    &specs.LinuxCapabilities{Bounding: clone(defaultCaps), Effective: clone(defaultCaps), Permitted: clone(defaultCaps)},
			NoNewPrivileges: true, OOMScoreAdj: intp(-998)},
		Root: &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: append(defaultKernelMounts(),
			specs.Mount{Destination: "/dev/shm", Type: "bind", Source: tCRIState + "/sandboxes/" + tSandboxID + "/shm", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}},
			specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: tCRIRoot + "/sandboxes/" + tSandboxID + "/resolv.conf", Options: []string{"rbind", "ro", "nosuid", "nodev", "noexec"}}),
		Annotations: map[string]string{
			AnnotationContainerType: "sandbox", AnnotationSandboxID: tSandboxID, AnnotationSandboxNamespace: "default",
			AnnotationSandboxUID: tUID, AnnotationSandboxName: "web-0",
			"io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/default_web-0_" + tUID,
			"io.kubernetes.cri.podsandbox.image-name": "registry.k8s.io/pause:3.10",
			AnnotationSandboxCPUPeriod:                "100000", AnnotationSandboxCPUQuota: "30000",
			AnnotationSandboxCPUShares: "307", AnnotationSandboxMemory: "734003200",
		},
		Linux: &specs.Linux{
			Sysctl: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "net.ipv4.ping_group_range": "0 2147483647"},
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				CPU: &specs.LinuxCPU{Shares: u64(2)}},
			CgroupsPath: "/kubepods/burstable/pod" + tUID + "/" + tSandboxID,
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"},
				{Type: "network", Path: tNetns}},
			MaskedPaths:   clone(DefaultMaskedPaths),
			ReadonlyPaths: clone(DefaultReadonlyPaths),
		},
	}
}

func kubeletBind(rel, dest string, opts ...string) specs.Mount {
	return specs.Mount{Destination: dest, Type: "bind", Source: tKubelet + "/pods/" + tUID + "/" + rel, Options: append([]string{"rbind", "rprivate"}, opts...)}
}

// criContainer is an app container "app" of that pod: 300m/700Mi, a
// projected service account token, an emptyDir, kubelet's hosts and
// termination log, CRI's hostname, resolv.conf and shm.
func criContainer() *specs.Spec {
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{Args: []string{"/bin/sh", "-c", "sleep 1d"}, Env: []string{"PATH=/bin", "HOSTNAME=web-0"}, Cwd: "/",
			Capabilities: &specs.LinuxCapabilities{Bounding: clone(defaultCaps), Effective: clone(defaultCaps), Permitted: clone(defaultCaps)},
			OOMScoreAdj:  intp(936)},
		Root: &specs.Root{Path: "rootfs"},
		Mounts: append(defaultKernelMounts(),
			specs.Mount{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			kubeletBind("etc-hosts", "/etc/hosts", "rw"),
			kubeletBind("containers/app/3f2a9c1d", "/dev/termination-log", "rw"),
			kubeletBind("volumes/kubernetes.io~projected/kube-api-access-7x2kq", "/var/run/secrets/kubernetes.io/serviceaccount", "ro"),
			kubeletBind("volumes/kubernetes.io~empty-dir/data", "/data", "rw"),
			specs.Mount{Destination: "/etc/hostname", Type: "bind", Source: tCRIRoot + "/sandboxes/" + tSandboxID + "/hostname", Options: []string{"rbind", "rprivate", "rw"}},
			specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: tCRIRoot + "/sandboxes/" + tSandboxID + "/resolv.conf", Options: []string{"rbind", "rprivate", "rw"}},
			specs.Mount{Destination: "/dev/shm", Type: "bind", Source: tCRIState + "/sandboxes/" + tSandboxID + "/shm", Options: []string{"rbind", "rprivate", "rw"}}),
		Annotations: map[string]string{
			AnnotationContainerType: "container", AnnotationSandboxID: tSandboxID, AnnotationSandboxNamespace: "default",
			AnnotationSandboxUID: tUID, AnnotationSandboxName: "web-0", AnnotationContainerName: "app",
			"io.kubernetes.cri.image-name": "docker.io/library/busybox:1.36",
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				CPU:    &specs.LinuxCPU{Shares: u64(307), Quota: i64(30000), Period: u64(100000)},
				Memory: &specs.LinuxMemory{Limit: i64(700 * MiB)}},
			CgroupsPath: "/kubepods/burstable/pod" + tUID + "/" + tContainerID,
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "ipc", Path: fmt.Sprintf("/proc/%d/ns/ipc", tPausePID)},
				{Type: "uts", Path: fmt.Sprintf("/proc/%d/ns/uts", tPausePID)}, {Type: "mount"},
				{Type: "network", Path: fmt.Sprintf("/proc/%d/ns/net", tPausePID)}},
			MaskedPaths:   clone(DefaultMaskedPaths),
			ReadonlyPaths: clone(DefaultReadonlyPaths),
		},
	}
}

// ctrSpec is what `ctr run` sends for image busybox, command args, in
// containerd namespace "tenant" (containerd's own spec generator).
func ctrSpec(t testing.TB, id string, opts ...oci.SpecOpts) *specs.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "tenant")
	opts = append([]oci.SpecOpts{oci.WithDefaultUnixDevices, oci.WithProcessArgs("sleep", "600")}, opts...)
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// baseConfig is the node: kata-less runc (no isolation), default roots.
func baseConfig(ns string) Config {
	return Config{PodDir: tPodDir, Namespace: ns, Isolation: backend.IsolationNone, Namespaces: testResolver(),
		HostNamespaces: hostNS, ShimDirs: []string{"/run/cci-shim", "/var/lib/cci-shim/pods"},
		HostFS: func(Pin) (int64, bool, error) { return 256 * MiB, true, nil }}
}

// sandboxState runs the sandbox through Apply and records its namespaces
// the way the shim does once its task exists.
func sandboxState(t testing.TB, cfg Config) *PodState {
	t.Helper()
	s := criSandbox()
	plan, err := applySpec(s, tSandboxID, cfg)
	if err != nil {
		t.Fatalf("sandbox: %v", err)
	}
	plan.State.RecordNamespaces("", []NSRef{podNet, podIPC, podUTS, podPID})
	return plan.State
}

// applySpec reads the pod from spec and applies the policy as the shim does.
func applySpec(s *specs.Spec, id string, cfg Config) (*Plan, error) {
	pod, err := PodOfContainer(s, id)
	if err != nil {
		return nil, err
	}
	return Apply(s, pod, cfg)
}
