package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestAttackBindSwap: item 4 of issue 9. A bind source lies in a directory
// the tenant writes (its emptyDir): a container of the pod plants a
// symlink to a host directory there, before another container's Create or
// between its Create and Start. The shim opens each source once without
// following symlinks and mounts what it opened (sandbox.PinSources): a
// symlink is refused, and a swap after the check changes nothing. Sources
// in the pod's own shim-made dirs (its /dev/shm, its replacement volumes)
// are not platform sources at all.
func TestAttackBindSwap(t *testing.T) {
	env := startEnv(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	hostDir := filepath.Join(env.Dir, "host-secrets")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "marker"), []byte("HOST-SECRET\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := podConfig(env, "bindswap", map[string]string{
		"coordinator.cci.io/hostpath-replacement": `[{"name":"scratch-host","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"16Mi"}}]`,
	})
	k := newKubeletPod(t, env, cfg.Metadata.Uid)
	data := k.emptyDir("data")
	p := runPodT(ctx, t, env, cfg)
	writer := sleeper(env, "writer")
	writer.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: data}}
	wid := p.mustStart(ctx, t, writer)
	p.exec(ctx, t, wid, "for d in sub late; do mkdir /data/$d && echo inside-$d > /data/$d/marker; done")

	t.Run("swapped after Start: no effect", func(t *testing.T) {
		reader := sleeper(env, "reader")
		reader.Mounts = []*runtimeapi.Mount{{ContainerPath: "/sub", HostPath: filepath.Join(data, "sub"), Readonly: true}}
		rid := p.mustStart(ctx, t, reader)
		p.exec(ctx, t, wid, "mv /data/sub /data/sub.old && ln -s "+hostDir+" /data/sub")
		if out := p.exec(ctx, t, rid, "cat /sub/marker"); out != "inside-sub\n" {
			t.Errorf("after the swap the reader sees %q, want inside-sub", out)
		}
		// The backend was given the pinned mount, not the tenant's path.
		b, err := os.ReadFile(filepath.Join(env.StateDir, e2eenv.CRINamespace, p.id, "bundles", rid, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var s specs.Spec
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatal(err)
		}
		pins := filepath.Join(env.StateDir, e2eenv.CRINamespace, p.id, "pins", rid)
		for _, m := range s.Mounts {
			if m.Destination == "/sub" && !strings.HasPrefix(m.Source, pins+"/") {
				t.Errorf("the backend mounts %s from %s, not from the pod's pins", m.Destination, m.Source)
			}
		}
		// Once the container runs its pins have left the host's mount
		// table: the container's own mounts keep what was checked.
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err != nil || strings.Contains(string(mi), " "+pins) {
			t.Errorf("the started container's pins are still mounted on the host (%v)", err)
		}
		if _, err := os.Stat(pins); !os.IsNotExist(err) {
			t.Errorf("the started container's pin dir %s is left: %v", pins, err)
		}
	})

	t.Run("planted before Create: refused", func(t *testing.T) {
		// CRI resolves a mount's host path before it writes the spec: the
		// symlink leads to the host directory, a hostPath, refused.
		reader := sleeper(env, "reader2")
		reader.Mounts = []*runtimeapi.Mount{{ContainerPath: "/sub", HostPath: filepath.Join(data, "sub"), Readonly: true}}
		_, err := p.start(ctx, reader)
		wantRefused(t, "StartContainer", err, `hostPath volume "`+hostDir+`" is not allowed (mounted at /sub); `+hostPathText)
		// The containerd API passes the path as it is: the pin opens it
		// without following the symlink, in the last component or a
		// middle one.
		for _, src := range []string{filepath.Join(data, "sub"), filepath.Join(data, "sub", "marker")} {
			rel := strings.TrimPrefix(src, filepath.Join(env.Dir, "kubelet")+"/")
			apiRefused(t, env, e2eenv.CRINamespace, criID(t),
				[]string{"pinning bind source " + src + ": opening " + rel + " beneath " + filepath.Join(env.Dir, "kubelet") + " without symlinks: too many levels of symbolic links"},
				claimPod(p, "planted"), oci.WithMounts([]specs.Mount{{Destination: "/sub", Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}))
		}
	})

	t.Run("swapped between Create and Start: no effect", func(t *testing.T) {
		// CRI creates and starts a task in one call; the containerd API
		// splits them. The container claims this pod in CRI's namespace.
		id := criID(t)
		a, err := apiCreate(t, env, e2eenv.CRINamespace, id, claimPod(p, "late"),
			oci.WithMounts([]specs.Mount{{Destination: "/late", Type: "bind", Source: filepath.Join(data, "late"), Options: []string{"rbind", "ro"}}}),
			oci.WithProcessArgs("sh", "-c", "cat /late/marker; ls /late"))
		if err != nil {
			t.Fatal(err)
		}
		p.exec(ctx, t, wid, "mv /data/late /data/late.old && ln -s "+hostDir+" /data/late")
		out, code := a.run(t)
		if out != "inside-late\nmarker\n" || code != 0 {
			t.Errorf("after a swap between Create and Start the container sees %q (exit %d), want its checked directory", out, code)
		}
		a.remove()
	})

	t.Run("the pod's own shm and replacement volumes are not sources", func(t *testing.T) {
		// They are hostPaths to the policy: refused, never mounted.
		repl := sleeper(env, "repl")
		repl.Mounts = []*runtimeapi.Mount{{ContainerPath: "/scratch", HostPath: filepath.Join(env.Dir, "scratch-host")}}
		p.mustStart(ctx, t, repl)
		podVolumes := filepath.Join(env.Dir, "volumes", e2eenv.CRINamespace, p.id)
		vols, _ := filepath.Glob(filepath.Join(podVolumes, "volumes", "vol-*"))
		if len(vols) != 1 {
			t.Fatalf("replacement volumes %v, want one", vols)
		}
		for i, src := range []string{filepath.Join(podVolumes, "shm"), vols[0]} {
			c := sleeper(env, fmt.Sprintf("own%d", i))
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: src}}
			_, err := p.start(ctx, c)
			wantRefused(t, "StartContainer", err, `hostPath volume "`+src+`" is not allowed (mounted at /x); `+hostPathText)
		}
	})

	p.remove(ctx, t)
	k.unmount()
	assertClean(t, env)
	if b, err := os.ReadFile(filepath.Join(hostDir, "marker")); err != nil || string(b) != "HOST-SECRET\n" {
		t.Errorf("host dir changed: %q, %v", b, err)
	}
}
