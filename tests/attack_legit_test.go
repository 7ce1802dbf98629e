package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestAttackLegitimate: what the allow-list must keep working. A pod laid
// out as kubelet lays it out (emptyDir, configmap, secret and projected
// volumes with kubelet's atomic-writer symlinks, a subPath, the
// termination log, kubelet's /etc/hosts), CRI's own files (hostname,
// resolv.conf, /dev/shm), a CRI image volume, the default devices,
// kubectl debug --target, and GPU nodes the shim adds.
func TestAttackLegitimate(t *testing.T) {
	env := startEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	t.Run("kubelet volumes, CRI files, image volume, default devices", func(t *testing.T) {
		cfg := podConfig(env, "legit", nil)
		cfg.Hostname = "legit-host"
		k := newKubeletPod(t, env, cfg.Metadata.Uid)
		data := k.emptyDir("data")
		if err := os.MkdirAll(filepath.Join(data, "sub"), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "sub", "from-subpath"), []byte("subpath\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		subPath := k.subPath("data", "app", 0, filepath.Join(data, "sub"))
		termLog := k.terminationLog("app")
		mounts := []*runtimeapi.Mount{
			{ContainerPath: "/data", HostPath: data},
			{ContainerPath: "/sub", HostPath: subPath},
			{ContainerPath: "/etc/cfg", HostPath: k.atomicVolume("configmap", "cfg", map[string]string{"app.conf": "key=value\n"}), Readonly: true},
			{ContainerPath: "/etc/creds", HostPath: k.atomicVolume("secret", "creds", map[string]string{"password": "s3cret\n"}), Readonly: true},
			{ContainerPath: "/var/run/secrets/kubernetes.io/serviceaccount", HostPath: k.atomicVolume("projected", "kube-api-access-x7x2z",
				map[string]string{"token": "tkn\n", "ca.crt": "CA\n", "namespace": "default\n"}), Readonly: true},
			{ContainerPath: "/dev/termination-log", HostPath: termLog},
			{ContainerPath: "/etc/hosts", HostPath: k.etcHosts("127.0.0.1 localhost\n10.0.0.1 kubelet-managed\n")},
			{ContainerPath: "/models", Image: &runtimeapi.ImageSpec{Image: env.Image}, Readonly: true},
		}
		p := runPodT(ctx, t, env, cfg)
		app, side := sleeper(env, "app"), sleeper(env, "side")
		app.Mounts, side.Mounts = mounts, mounts[:1]
		aid := p.mustStart(ctx, t, app)
		sid := p.mustStart(ctx, t, side)

		for _, c := range []struct{ script, want string }{
			{"cat /etc/cfg/app.conf /etc/creds/password /var/run/secrets/kubernetes.io/serviceaccount/token /sub/from-subpath",
				"key=value\ns3cret\ntkn\nsubpath\n"},
			{"grep -c kubelet-managed /etc/hosts; cat /etc/hostname", "1\nlegit-host\n"},
			{"test -s /etc/resolv.conf && grep -c ' /etc/resolv.conf ' /proc/mounts", "1\n"},
			{"grep ' /dev/shm ' /proc/mounts | cut -d' ' -f3", "tmpfs\n"},
			{"test -x /models/bin/busybox && echo image-volume", "image-volume\n"},
			{"echo bye > /dev/termination-log; echo from-app > /data/f; echo ok", "ok\n"},
			{"echo > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c && head -c 4 /dev/full | wc -c", "4\n4\n4\n"},
			{"ls /dev | grep -c -E '^(loop|sd|vd|nvme|xvd|dm-|kvm|mem|port)'; true", "0\n"},
			{"grep -E ' /(data|sub|etc/cfg|models) ' /proc/mounts | grep -vc nodev; true", "0\n"},
		} {
			if out := p.exec(ctx, t, aid, c.script); out != c.want {
				t.Errorf("%s:\n got %q\nwant %q", c.script, out, c.want)
			}
		}
		if out := p.exec(ctx, t, sid, "cat /data/f"); out != "from-app\n" {
			t.Errorf("the sidecar reads %q from the shared emptyDir, want from-app", out)
		}
		// Without kubelet's /etc/hosts, CRI's own (from its sandbox dir).
		if out := p.exec(ctx, t, sid, "grep ' /etc/hosts ' /proc/mounts | grep -c nodev; grep -c localhost /etc/hosts"); out != "1\n1\n" {
			t.Errorf("the sidecar's /etc/hosts is not CRI's pinned file: %q", out)
		}
		if b, err := os.ReadFile(termLog); err != nil || string(b) != "bye\n" {
			t.Errorf("termination log on the host: %q, %v", b, err)
		}
		if b, err := os.ReadFile(filepath.Join(data, "f")); err != nil || string(b) != "from-app\n" {
			t.Errorf("emptyDir on the host: %q, %v", b, err)
		}
		p.remove(ctx, t)
		k.unmount()
		assertClean(t, env)
	})

	t.Run("kubectl debug --target of a container of the pod", func(t *testing.T) {
		p := runPodT(ctx, t, env, podConfig(env, "debug", nil))
		own := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}}
		target := containerConfig(env, "target", "while :; do sleep 1; done; : target-marker")
		target.Linux.SecurityContext = own
		tid := p.mustStart(ctx, t, target)
		debug := sleeper(env, "debugger")
		debug.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: tid}}
		did := p.mustStart(ctx, t, debug)
		if out := p.exec(ctx, t, did, "ps -o args | grep -c [t]arget-marker"); out != "1\n" {
			t.Errorf("the debug container does not see its target's processes: %q", out)
		}
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("GPU nodes the shim adds; the same node asked for in the spec", func(t *testing.T) {
		host := t.TempDir()
		for _, d := range []string{"lib64", "bin", "root/proc"} {
			if err := os.MkdirAll(filepath.Join(host, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(host, "fixture.json"), []byte(gpuFixture), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(host, "root/proc/devices"), []byte(procDevices), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := env.SetNodeConfig(fmt.Sprintf(gpuNodeConfig, filepath.Join(host, "fixture.json"), filepath.Join(host, "root"),
			filepath.Join(host, "lib64"), filepath.Join(host, "bin"))); err != nil {
			t.Fatal(err)
		}
		defer env.SetNodeConfig("")
		out, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, "--annotation", "gpu.cci.io/count=1", env.Image, "gpu-legit",
			"sh", "-c", "ls /dev | grep nvidia | sort | tr '\\n' ' '")
		if err != nil || out != "nvidia-modeset nvidia-uvm nvidia-uvm-tools nvidia0 nvidiactl " {
			t.Errorf("GPU container sees %q (%v, %s), want the node nvidia0 and the control nodes", out, err, errOut)
		}
		apiRefused(t, env, env.Namespace, "gpu-own", []string{`linux.devices "/dev/nvidia1 c 195:1" is not allowed; ` + devicesText},
			oci.WithAnnotations(map[string]string{"gpu.cci.io/count": "1"}), withSpec(func(s *specs.Spec) {
				s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/nvidia1", Type: "c", Major: 195, Minor: 1})
			}))
		if got := gpuAllocations(t, env); len(got) != 0 {
			t.Errorf("GPU ledger holds %v after the pods went", got)
		}
		assertClean(t, env)
	})
}

// subPath is kubelet's bind mount of a subPath: volume-subpaths/<volume>/
// <container>/<index>, a mount of src.
func (k *kubeletPod) subPath(volume, container string, index int, src string) string {
	d := filepath.Join(k.dir, "volume-subpaths", volume, container, fmt.Sprint(index))
	if err := os.MkdirAll(d, 0o750); err != nil {
		k.t.Fatal(err)
	}
	if err := unix.Mount(src, d, "", unix.MS_BIND, ""); err != nil {
		k.t.Fatal(err)
	}
	k.mounts = append(k.mounts, d)
	return d
}
