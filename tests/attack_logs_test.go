package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// logVolumeSize is the pod log volume of the env (logs.volume_size_bytes).
const logVolumeSize = 32 << 20

// appLogPolicy collects /var/log/app/*.log of container app.
const appLogPolicy = `[{"container":"app","paths":["/var/log/app/*.log"]}]`

// TestAttackLogs: item 11 of issue 9 (and the log halves of items 3 and
// 12). A tenant cannot fill the host through its log volume (an ext4 image
// of logs.volume_size_bytes on disk), a sparse file does not amplify into
// the sink, sinks are named from containerd identifiers only (the same
// container id in two containerd namespaces, names with ".."), and a log
// path on a tmpfs is refused at creation (R19).
func TestAttackLogs(t *testing.T) {
	env := startEnv(t, true, fmt.Sprintf("logs.volume_size_bytes = %d\n", logVolumeSize))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sinkDir := filepath.Join(env.Dir, "podlogs")

	t.Run("11: the log volume is size-limited and on disk", func(t *testing.T) {
		p := runPodT(ctx, t, env, podConfig(env, "logfill", map[string]string{"logs.cci.io/policies": appLogPolicy}))
		id := p.mustStart(ctx, t, sleeper(env, "app"))
		out := p.exec(ctx, t, id, "exec 2>&1; grep ' /var/log/app ' /proc/mounts | cut -d' ' -f3; "+
			"dd if=/dev/urandom of=/var/log/app/fill.bin bs=1M count=64; echo rc=$?; df -k /var/log/app")
		if !strings.HasPrefix(out, "ext4\n") || !strings.Contains(out, "No space left on device") || strings.Contains(out, "rc=0") {
			t.Errorf("writing 64 MiB into a %d MiB log volume:\n%s", logVolumeSize>>20, out)
		}
		if got := dfKiB(t, out); got > logVolumeSize>>10 {
			t.Errorf("log volume is %d KiB, more than %d", got, logVolumeSize>>10)
		}
		img := filepath.Join(env.Dir, "volumes", e2eenv.CRINamespace, p.id, "images", "logs.img")
		var st unix.Stat_t
		var fs unix.Statfs_t
		if err := unix.Stat(img, &st); err != nil {
			t.Fatalf("log volume image: %v", err)
		}
		if err := unix.Statfs(filepath.Dir(img), &fs); err != nil || fs.Type == unix.TMPFS_MAGIC {
			t.Errorf("the log volume image %s is on a tmpfs (host memory) (%v)", img, err)
		}
		if used := st.Blocks * 512; used > logVolumeSize+(1<<20) {
			t.Errorf("the log volume takes %d bytes of host disk, more than its %d", used, logVolumeSize)
		}
		t.Logf("log volume: %d KiB inside, image %s uses %d KiB of host disk", dfKiB(t, out), img, st.Blocks/2)
		p.remove(ctx, t)
		assertClean(t, env)
	})

	t.Run("11: a 10 MiB sparse file does not amplify", func(t *testing.T) {
		p := runPodT(ctx, t, env, podConfig(env, "sparse", map[string]string{"logs.cci.io/policies": appLogPolicy}))
		id := p.mustStart(ctx, t, sleeper(env, "app"))
		p.exec(ctx, t, id, "truncate -s 10M /var/log/app/sparse.log && echo tail-line >> /var/log/app/sparse.log && echo ok")
		var sink string
		if !waitFor(90*time.Second, func() bool {
			sink = sinkOf(t, sinkDir, e2eenv.CRINamespace, p.id)
			b, _ := os.ReadFile(sink)
			return strings.Contains(string(b), "tail-line")
		}) {
			t.Fatalf("the line after the hole never reached the sink %s", sink)
		}
		p.remove(ctx, t)
		fi, err := os.Stat(sink)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("a 10 MiB sparse file and one line: sink %s is %d bytes", sink, fi.Size())
		if fi.Size() > 64<<10 {
			t.Errorf("the sink grew to %d bytes from a 10 MiB hole and one line", fi.Size())
		}
		assertClean(t, env)
	})

	t.Run("11: the same container id in two containerd namespaces", func(t *testing.T) {
		const id, lines = "twin", 200
		policy := `logs.cci.io/policies=[{"container":"` + id + `","paths":["/var/log/app/*.log"]}]`
		nss := []string{env.Namespace, e2eenv.CRINamespace}
		for _, ns := range nss {
			script := fmt.Sprintf("mkdir -p /var/log/app; i=0; while [ $i -lt %d ]; do echo %s-line-$i >> /var/log/app/app.log; i=$((i+1)); done; sleep 600", lines, ns)
			if _, errOut, err := env.CtrIn(ns, "run", "-d", "--snapshotter", e2eenv.Snapshotter, "--runtime", cciRuntime, "--annotation", policy,
				env.Image, id, "sh", "-c", script); err != nil {
				t.Fatalf("ctr -n %s run: %v: %s", ns, err, errOut)
			}
		}
		for _, ns := range nss {
			if !waitFor(60*time.Second, func() bool { return len(sinkLines(t, sinkOf(t, sinkDir, ns, id))) >= lines }) {
				t.Errorf("%s: %d lines at the sink, want %d", ns, len(sinkLines(t, sinkOf(t, sinkDir, ns, id))), lines)
			}
		}
		for _, ns := range nss {
			removeTask(t, env, ns, id)
		}
		for _, ns := range nss {
			sink := sinkOf(t, sinkDir, ns, id)
			got := sinkLines(t, sink)
			for i := 0; i < lines; i++ {
				if w := fmt.Sprintf("%s-line-%d", ns, i); got[w] != 1 {
					t.Errorf("%s: %q arrived %d times in %s, want once", ns, w, got[w], sink)
				}
			}
			if len(got) != lines {
				t.Errorf("%s: %d distinct lines in %s, want %d", ns, len(got), sink, lines)
			}
		}
		assertClean(t, env)
	})

	t.Run("3: pod name and namespace with .. name no host file", func(t *testing.T) {
		cfg := podConfig(env, "dots", map[string]string{"logs.cci.io/policies": appLogPolicy})
		cfg.Metadata.Name, cfg.Metadata.Namespace = "../../../../../tmp/evil-sink", "../.."
		p := runPodT(ctx, t, env, cfg)
		p.mustStart(ctx, t, containerConfig(env, "app", "mkdir -p /var/log/app; echo dotted > /var/log/app/a.log; sleep 600"))
		if !waitFor(60*time.Second, func() bool { return sinkLines(t, sinkOf(t, sinkDir, e2eenv.CRINamespace, p.id))["dotted"] == 1 }) {
			t.Errorf("the line never reached the pod's sink")
		}
		p.remove(ctx, t)
		recs := sinkRecords(t, sinkOf(t, sinkDir, e2eenv.CRINamespace, p.id))
		if len(recs) != 1 || recs[0].Pod != cfg.Metadata.Name || recs[0].Namespace != "../.." {
			t.Errorf("records %+v, want one with the pod's names inside", recs)
		}
		entries, _ := os.ReadDir(sinkDir)
		for _, e := range entries {
			if strings.Contains(e.Name(), "evil") || strings.Contains(e.Name(), "..") {
				t.Errorf("sink file %s is named after the tenant's names", e.Name())
			}
		}
		for _, pattern := range []string{"/tmp/evil-sink*", filepath.Join(env.Dir, "*evil*"), "/evil-sink*"} {
			if m, _ := filepath.Glob(pattern); len(m) > 0 {
				t.Errorf("files outside the sink dir: %v", m)
			}
		}
		assertClean(t, env)
	})

	t.Run("12: a log path on a tmpfs", func(t *testing.T) {
		_, errOut, err := env.CtrRun("--rm", "--runtime", cciRuntime, "--mount", "type=tmpfs,src=tmpfs,dst=/var/log/app",
			"--annotation", `logs.cci.io/policies=[{"container":"tmpfs-logs","paths":["/var/log/app/*.log"]}]`, env.Image, "tmpfs-logs", "true")
		wantCtrRefused(t, "ctr run with a log path on a tmpfs mount", err, errOut,
			`annotation logs.cci.io/policies: path "/var/log/app/*.log" of container "tmpfs-logs" is on a tmpfs mount (at /var/log/app); allowed: log paths on the container's disk`)
		env.Ctr("container", "rm", "tmpfs-logs")

		// kubelet hands a Memory emptyDir over as a host tmpfs.
		cfg := podConfig(env, "memlogs", map[string]string{"logs.cci.io/policies": appLogPolicy})
		k := newKubeletPod(t, env, cfg.Metadata.Uid)
		mem := k.emptyDir("logs")
		if err := unix.Mount("tmpfs", mem, "tmpfs", 0, "size=8m"); err != nil {
			t.Fatal(err)
		}
		k.mounts = append(k.mounts, mem)
		p := runPodT(ctx, t, env, cfg)
		cc := sleeper(env, "app")
		cc.Mounts = []*runtimeapi.Mount{{ContainerPath: "/var/log/app", HostPath: mem}}
		_, err = p.start(ctx, cc)
		wantRefused(t, "StartContainer", err, `annotation logs.cci.io/policies: path "/var/log/app/*.log" of container "app" is on a tmpfs mount (at /var/log/app)`)

		cfg2 := podConfig(env, "shmlogs", map[string]string{"logs.cci.io/policies": `[{"container":"app","paths":["/dev/shm/*.log"]}]`})
		p2, err := runPod(ctx, env, cfg2)
		if err == nil {
			p2.remove(ctx, t)
		}
		wantRefused(t, "RunPodSandbox", err, `path "/dev/shm/*.log": /dev is a system, device, cgroup or tmpfs location`)
		p.remove(ctx, t)
		k.unmount()
		assertClean(t, env)
	})
}

// sinkOf is the file sink of pod id (a sandbox id, or a ctr container's
// id) in containerd namespace ns: the one file of dir whose name holds both
// identifiers. The naming scheme is logfwd's; the test only relies on it
// being made of the two.
func sinkOf(t *testing.T, dir, ns, id string) string {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	var found []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ns) && strings.Contains(strings.TrimPrefix(n, ns), id) && strings.HasSuffix(n, ".jsonl") {
			found = append(found, filepath.Join(dir, n))
		}
	}
	if len(found) > 1 {
		t.Fatalf("sinks of %s/%s: %v, want one", ns, id, found)
	}
	if len(found) == 0 {
		return filepath.Join(dir, ns+"?"+id+".jsonl")
	}
	return found[0]
}

// sinkRecords reads a file sink.
func sinkRecords(t *testing.T, path string) []logRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var recs []logRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var r logRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("sink %s line %.100q: %v", path, sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// sinkLines counts the log lines of a file sink.
func sinkLines(t *testing.T, path string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, r := range sinkRecords(t, path) {
		n[r.Log]++
	}
	return n
}
