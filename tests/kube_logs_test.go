package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/tests/kubeenv"
)

// kubeStdoutLogs: 2,000,000 bytes of numbered lines written at once to
// stdout reach `kubectl logs` (and client-go's) exactly, in order (R14 is
// lossless), and the
// container is held to the 1 MB/s forwarding rate while writing them: the
// write takes at least the time the rate allows, less what the pipes hold.
func kubeStdoutLogs(t *testing.T, c *kubeenv.Cluster) {
	const lines, lineLen = 40000, 50 // 2,000,000 bytes
	script := fmt.Sprintf(`awk 'BEGIN { for (i = 0; i < %d; i++) printf "%%0%dd\n", i }' > /tmp/lines
read a _ < /proc/uptime; cat /tmp/lines; read b _ < /proc/uptime
echo "$a $b" > /tmp/elapsed; `+sleepForever, lines, lineLen-1)
	pod := kubePod("r14", "stdout", kubeenv.RuntimeClassCCI, script)
	kubeRunPod(t, c, pod)
	var times []string
	if !waitFor(time.Minute, func() bool {
		out, _, err := c.Kubectl(kctx(t, 20*time.Second), "exec", "-n", "r14", pod.Name, "--", "cat", "/tmp/elapsed")
		times = strings.Fields(out)
		return err == nil && len(times) == 2
	}) {
		t.Fatalf("the container did not finish writing: %q", times)
	}
	a, _ := strconv.ParseFloat(times[0], 64)
	b, _ := strconv.ParseFloat(times[1], 64)
	t.Logf("the container wrote %d bytes to stdout in %.2f s", lines*lineLen, b-a)
	if b-a < 1.7 {
		t.Errorf("writing 2,000,000 bytes took %.2f s; at 1 MB/s it cannot take less than about 1.8 s", b-a)
	}
	out, errOut, err := c.Kubectl(kctx(t, time.Minute), "logs", "-n", "r14", pod.Name)
	if err != nil {
		t.Fatalf("kubectl logs: %v: %s", err, errOut)
	}
	if viaClient, err := c.PodLogs(kctx(t, time.Minute), "r14", pod.Name, "app"); err != nil || viaClient != out {
		t.Errorf("client-go logs (%d bytes, %v) differ from kubectl logs (%d bytes)", len(viaClient), err, len(out))
	}
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(got) != lines {
		t.Errorf("kubectl logs: %d lines (%d bytes), want %d", len(got), len(out), lines)
	}
	for i, l := range got {
		if want := fmt.Sprintf("%0*d", lineLen-1, i); l != want {
			t.Errorf("kubectl logs line %d = %q, want %q (lost, reordered or repeated)", i, l, want)
			break
		}
	}
	kubeDeletePod(t, c, "r14", pod.Name)
}

// kubeLogFiles: a pod that declares /var/log/app/*.log has its files
// collected into the node's file sink, each line once, tagged with the
// pod's namespace, name and UID as the API server knows them (R15).
func kubeLogFiles(t *testing.T, c *kubeenv.Cluster) {
	const n = 200
	pod := kubePod("r15", "logger", kubeenv.RuntimeClassCCI, fmt.Sprintf(
		`mkdir -p /var/log/app; i=0; while [ $i -lt %d ]; do echo "file-line-$i" >> /var/log/app/a.log; i=$((i+1)); done; `+sleepForever, n))
	pod.Annotations["logs.cci.io/policies"] = `[{"container":"app","paths":["/var/log/app/*.log"]}]`
	p := kubeRunPod(t, c, pod)
	id, err := c.SandboxID(kctx(t, 10*time.Second), p)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod r15/logger: sandbox %s", id)
	sink := filepath.Join(c.Env.Dir, "podlogs", sinkName(t, id))
	var counts map[string]int
	if !waitFor(30*time.Second, func() bool {
		counts = kubeSinkLines(t, sink, "r15", "logger", string(p.UID))
		return len(counts) >= n
	}) {
		t.Errorf("file sink %s has %d distinct lines after 30 s, want %d", sink, len(counts), n)
	}
	for i := 0; i < n; i++ {
		if k := counts[fmt.Sprintf("file-line-%d", i)]; k != 1 {
			t.Errorf("file-line-%d arrived %d times, want once", i, k)
		}
	}
	kubeDeletePod(t, c, "r15", pod.Name)
}

// kubeSinkLines reads a file sink and counts each log line; records not tagged
// with the pod are errors.
func kubeSinkLines(t *testing.T, path, ns, pod, uid string) map[string]int {
	t.Helper()
	counts := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return counts
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r logRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			continue // a line being written
		}
		if r.Namespace != ns || r.Pod != pod || r.PodUID != uid || r.Container != "app" {
			t.Errorf("record not tagged with the pod's identity (%s/%s %s): %+v", ns, pod, uid, r)
		}
		counts[r.Log]++
	}
	return counts
}

func kubeReadFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	return string(b), err
}
