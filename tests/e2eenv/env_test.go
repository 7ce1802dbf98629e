//go:build linux

package e2eenv

import (
	"context"
	"errors"
	"github.com/cci-shim/cci-shim/internal/testutil"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestSmokeCtrRun runs a container with ctr and the runc runtime and checks that its root
// filesystem is the blockfile snapshot: a 20 GiB ext4 on a loop device. Then it tears the env
// down and checks that nothing is left behind.
func TestSmokeCtrRun(t *testing.T) {
	env := Start(t, Options{})

	stdout, stderr, err := env.CtrRun("--rm", "--runtime", RuncRuntime, env.Image, "smoke",
		"sh", "-c", `df -k /; grep " / " /proc/mounts`)
	if err != nil {
		t.Fatalf("ctr run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	t.Logf("container output:\n%s", stdout)

	// "/dev/loop3 / ext4 rw,relatime 0 0"
	if !regexp.MustCompile(`(?m)^/dev/loop\d+ / ext4 rw`).MatchString(stdout) {
		t.Errorf("container / is not a read-write ext4 on a loop device:\n%s", stdout)
	}
	// "Filesystem 1K-blocks Used Available Use% Mounted on" then "/dev/loopN 20466256 ..."
	m := regexp.MustCompile(`(?m)^/dev/loop\d+\s+(\d+)\s+\d+\s+\d+\s+\d+%\s+/$`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no df line for / on a loop device:\n%s", stdout)
	}
	kb, _ := strconv.ParseInt(m[1], 10, 64)
	if size := kb << 10; size < 19<<30 || size > 20<<30 {
		t.Errorf("container / is %d bytes (%.1f GiB), want about 20 GiB", size, float64(size)/(1<<30))
	}

	if leaks := env.WaitNoLeaks(5 * time.Second); len(leaks) > 0 {
		t.Errorf("leftovers after ctr run --rm (env running):\n%s", strings.Join(leaks, "\n"))
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if leaks := env.Leaks(); len(leaks) > 0 {
		t.Errorf("leftovers after teardown:\n%s", strings.Join(leaks, "\n"))
	}
}

// TestTeardownCleansRunningContainer leaves a container running and checks that Leaks sees
// it and that teardown removes it with its shim and mounts.
func TestTeardownCleansRunningContainer(t *testing.T) {
	env := Start(t, Options{})
	if stdout, stderr, err := env.CtrRun("-d", "--runtime", RuncRuntime, env.Image, "sleeper", "sleep", "3600"); err != nil {
		t.Fatalf("ctr run -d: %v\n%s%s", err, stdout, stderr)
	}
	shims := env.ShimPIDs(RuncShimBinary)
	if len(shims) != 1 {
		t.Fatalf("want 1 runc shim, found %v", shims)
	}
	if rss := RSS(shims[0]); rss <= 0 {
		t.Errorf("RSS of shim %d = %d, want > 0", shims[0], rss)
	}
	// ctr run -d returns once the task started; runc init may not have exec'd sleep yet.
	var leaks []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if leaks = env.Leaks(); strings.Contains(strings.Join(leaks, "\n"), "sleep 3600") {
			break
		}
	}
	t.Logf("while the container runs, Leaks reports:\n%s", strings.Join(leaks, "\n"))
	var sawShim, sawSleep, sawMount bool
	for _, l := range leaks {
		sawShim = sawShim || strings.Contains(l, RuncShimBinary)
		sawSleep = sawSleep || strings.HasSuffix(l, "sleep 3600")
		sawMount = sawMount || strings.Contains(l, "/rootfs (ext4 from /dev/loop")
	}
	if !sawShim || !sawSleep || !sawMount {
		t.Errorf("Leaks misses the running container: shim %v, sleep %v, rootfs mount %v", sawShim, sawSleep, sawMount)
	}

	if err := env.Stop(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if leaks := env.Leaks(); len(leaks) > 0 {
		t.Errorf("leftovers after teardown:\n%s", strings.Join(leaks, "\n"))
	}
}

// clampOOMRunc is a test-only runc wrapper: this host refuses a negative oom_score_adj and
// CRI asks -998 for every sandbox, so plain runc cannot start a pod here. In the product the cci
// shim clamps process.oomScoreAdj; this wrapper does the same so the env's CRI path (CNI,
// netns, pause image, teardown of pods) can be tested without the cci shim.
const clampOOMRunc = `#!/bin/sh
prev=""
for a in "$@"; do
  if [ "$prev" = "--bundle" ]; then
    sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$a/config.json" || exit 1
  fi
  prev="$a"
done
exec runc "$@"
`

// TestSmokeCRI runs a pod with one container through CRI (runc handler, with the oom clamp
// above), execs in it, checks its network and root filesystem, removes it, and checks that
// nothing is left behind, before and after teardown.
func TestSmokeCRI(t *testing.T) {
	wrapper := filepath.Join(t.TempDir(), "runc-clamp-oom")
	if err := os.WriteFile(wrapper, []byte(clampOOMRunc), 0o755); err != nil {
		t.Fatal(err)
	}
	env := Start(t, Options{CRI: true, ExtraContainerdConfig: `
[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "` + wrapper + `"
`})
	rt, img := env.CRI()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ver, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("CRI Version: %v", err)
	}
	t.Logf("CRI runtime %s %s (API %s)", ver.RuntimeName, ver.RuntimeVersion, ver.RuntimeApiVersion)
	for _, name := range []string{env.Image, env.PauseImage} {
		st, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
		if err != nil || st.Image == nil {
			t.Fatalf("ImageStatus %s: %v, %v", name, st, err)
		}
		if name == env.PauseImage && !st.Image.Pinned {
			t.Errorf("pause image %s is not pinned", name)
		}
	}
	status, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatalf("CRI Status: %v", err)
	}
	for _, c := range status.Status.GetConditions() {
		if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && !c.Status {
			t.Errorf("CRI condition %s is false: %s %s", c.Type, c.Reason, c.Message)
		}
	}

	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "smoke", Namespace: "e2e", Uid: "smoke-uid"},
		LogDirectory: filepath.Join(env.Dir, "pod-logs"),
	}
	t.Logf("RunPodSandbox (handler %s)", CRIHandlerRunc)
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: CRIHandlerRunc})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId:  pod.PodSandboxId,
		SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
			Image:    &runtimeapi.ImageSpec{Image: env.Image},
			Command:  []string{"sleep", "3600"},
			LogPath:  "app.log",
		},
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	ex, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{
		ContainerId: created.ContainerId,
		Cmd:         []string{"sh", "-c", `grep " / " /proc/mounts; ip -4 addr show eth0`},
		Timeout:     10,
	})
	if err != nil || ex.ExitCode != 0 {
		t.Fatalf("ExecSync: %v, %v", ex, err)
	}
	t.Logf("exec output:\n%s", ex.Stdout)
	if !regexp.MustCompile(`(?m)^/dev/loop\d+ / ext4 rw`).Match(ex.Stdout) {
		t.Errorf("pod container / is not an ext4 on a loop device:\n%s", ex.Stdout)
	}
	if !strings.Contains(string(ex.Stdout), "inet "+strings.TrimSuffix(env.PodSubnet, "0/24")) {
		t.Errorf("pod has no address in %s:\n%s", env.PodSubnet, ex.Stdout)
	}

	t.Logf("StopPodSandbox + RemovePodSandbox")
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if leaks := env.WaitNoLeaks(5 * time.Second); len(leaks) > 0 {
		t.Errorf("leftovers after the pod was removed (env running):\n%s", strings.Join(leaks, "\n"))
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if leaks := env.Leaks(); len(leaks) > 0 {
		t.Errorf("leftovers after teardown:\n%s", strings.Join(leaks, "\n"))
	}
}

// TestTeardownAfterContainerdCrash kills containerd under a running container; teardown must
// still remove the orphaned shim, the container, its mount and loop device.
func TestTeardownAfterContainerdCrash(t *testing.T) {
	env := Start(t, Options{})
	if stdout, stderr, err := env.CtrRun("-d", "--runtime", RuncRuntime, env.Image, "orphan", "sleep", "3600"); err != nil {
		t.Fatalf("ctr run -d: %v\n%s%s", err, stdout, stderr)
	}
	pid := env.ContainerdPID()
	t.Logf("SIGKILL containerd (pid %d)", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); env.ContainerdPID() != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("containerd %d still running after SIGKILL", pid)
		}
	}
	if shims := env.ShimPIDs(RuncShimBinary); len(shims) != 1 {
		t.Errorf("want the orphaned runc shim still running, found %v", shims)
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if leaks := env.Leaks(); len(leaks) > 0 {
		t.Errorf("leftovers after teardown:\n%s", strings.Join(leaks, "\n"))
	}
}

// TestReapStale fakes the dir of a test process that died with a mount in it; the next
// Start must remove both.
func TestReapStale(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "cci-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(dir, "state", "m")
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	// pid 0 never names a live test process.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte("0 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		os.RemoveAll(dir)
		testutil.Unavailable(t, "cannot mount tmpfs: %v", err)
	}
	env := Start(t, Options{})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale env dir %s not removed by Start: %v", dir, err)
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		_ = os.RemoveAll(dir)
	}
	if _, err := os.Stat(env.Dir); err != nil {
		t.Errorf("Start removed its own dir: %v", err)
	}
}

// TestCheckReflinkRefusesPlainExt4 proves the storage check fails, rather than letting every
// snapshot copy the whole scratch file, on a filesystem without reflink.
func TestCheckReflinkRefusesPlainExt4(t *testing.T) {
	testutil.RequireRoot(t, "loop-mounts a small ext4 image")
	img := filepath.Join(t.TempDir(), "ext4.img")
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := createSparse(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := run("mkfs.ext4", "-q", "-F", img); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := run("mount", "-o", "loop", img, dir); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	err := checkReflink(dir)
	if err == nil {
		t.Fatalf("checkReflink on ext4 %s succeeded, want an error", dir)
	}
	t.Logf("as expected: %v", err)
}

// TestCCIRuntimeResolvesFromBinDir puts a stand-in containerd-shim-cci-v2 (a copy of the runc
// shim) in CCI_BIN_DIR and checks that `--runtime io.containerd.cci.v2` starts it from there.
func TestCCIRuntimeResolvesFromBinDir(t *testing.T) {
	binDir := t.TempDir()
	tools := checkPreconditions(t, Options{}) // skips like Start when the host lacks tools
	src, err := os.ReadFile(tools.runcShim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, CCIShimBinary), src, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinDirEnv, binDir)
	t.Setenv(ToolsDirEnv, tools.toolsDir)

	env := Start(t, Options{})
	if env.BinDir != binDir {
		t.Fatalf("env.BinDir = %s, want %s", env.BinDir, binDir)
	}
	if stdout, stderr, err := env.CtrRun("-d", "--runtime", CCIRuntime, env.Image, "cci", "sleep", "3600"); err != nil {
		t.Fatalf("ctr run --runtime %s: %v\n%s%s", CCIRuntime, err, stdout, stderr)
	}
	shims := env.ShimPIDs(CCIShimBinary)
	if len(shims) != 1 {
		t.Fatalf("want 1 %s, found %v", CCIShimBinary, shims)
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(shims[0]), "exe"))
	if err != nil || filepath.Dir(exe) != binDir {
		t.Errorf("shim %d runs %q (%v), want it from %s", shims[0], exe, err, binDir)
	}
}
