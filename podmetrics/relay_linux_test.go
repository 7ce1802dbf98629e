package podmetrics

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/podmetrics/relay"
)

// relayGet GETs path through a relay at addr and returns the response.
func relayGet(t *testing.T, addr, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s through the relay: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// buildRelay compiles the in-sandbox relay (C) into dir, as make build does.
func buildRelay(t *testing.T, dir string) string {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		testutil.Unavailable(t, "no C compiler (Debian packages gcc, libc6-dev)")
	}
	bin := filepath.Join(dir, RelayBinary)
	out, err := exec.Command(cc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", bin, "../cmd/cci-podmetrics/relay.c").CombinedOutput()
	if err != nil {
		t.Fatalf("building the relay: %v\n%s", err, out)
	}
	return bin
}

// startRelay runs the relay as the shim runs it, its stdin and stdout joined
// to ServeRelay over h, on a free port; it returns the address.
func startRelay(t *testing.T, h http.Handler) (addr string, stdin io.Closer, cmd *exec.Cmd) {
	t.Helper()
	bin := buildRelay(t, t.TempDir())
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd = exec.Command(bin, "-port", strconv.Itoa(port))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go ServeRelay(out, in, h)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, in, cmd
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay does not listen")
		}
	}
}

// TestRelay runs cmd/cci-podmetrics joined to ServeRelay as the shim joins
// them, and scrapes through it as a caller in the pod network would.
func TestRelay(t *testing.T) {
	src := &fakeSource{s: fullSnapshot()}
	addr, stdin, cmd := startRelay(t, NewHandler(NewCollector(src, nil), nil))

	resp, body := relayGet(t, addr, "/metrics", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `container_cpu_usage_seconds_total{container="app",namespace="team-a",pod="web"} 3.5`) {
		t.Fatalf("GET /metrics = %d\n%s", resp.StatusCode, body)
	}
	// Prometheus asks for gzip; the response comes through compressed.
	resp, _ = relayGet(t, addr, "/metrics", map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("gzip scrape: %d, Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	if resp, _ := relayGet(t, addr, "/other", nil); resp.StatusCode != 404 {
		t.Errorf("GET /other = %d", resp.StatusCode)
	}

	// Garbage, a head split across writes, an oversized head and a
	// stalled caller: each loses only its own connection.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "NOT HTTP\r\n\r\n")
	if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.Contains(line, "400") {
		t.Errorf("garbage request answered %q", line)
	}
	c.Close()
	c, _ = net.Dial("tcp", addr)
	for _, part := range []string{"GET /metrics HTTP/1.1\r\nHost: x\r", "\n\r", "\n"} {
		fmt.Fprint(c, part)
		time.Sleep(50 * time.Millisecond)
	}
	if line, _ := bufio.NewReader(c).ReadString('\n'); !strings.Contains(line, "200") && !strings.Contains(line, "429") {
		t.Errorf("head in three writes answered %q", line)
	}
	c.Close()
	c, _ = net.Dial("tcp", addr)
	c.Write([]byte(strings.Repeat("x", relay.MaxRequest+1)))
	io.Copy(io.Discard, c) // closed by the relay
	c.Close()
	stalled, _ := net.Dial("tcp", addr)
	fmt.Fprint(stalled, "GET /metrics HTTP/1.1\r\n") // never finishes its head
	start := time.Now()
	time.Sleep(300 * time.Millisecond)
	if resp, _ := relayGet(t, addr, "/metrics", nil); resp.StatusCode != 200 && resp.StatusCode != 429 {
		t.Errorf("after bad callers: %d", resp.StatusCode)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("a stalled caller held the relay %v", d)
	}
	stalled.Close()

	// The shim closing the relay's stdin ends it.
	stdin.Close()
	if c, err := net.Dial("tcp", addr); err == nil {
		fmt.Fprint(c, "GET /metrics HTTP/1.1\r\n\r\n")
		io.Copy(io.Discard, c)
		c.Close()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay exit after its stdin closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("relay still running after its stdin closed")
	}
}

// TestRelayMemory measures the relay after scrapes.
func TestRelayMemory(t *testing.T) {
	addr, _, cmd := startRelay(t, NewHandler(NewCollector(&fakeSource{s: fullSnapshot()}, nil), nil))
	for i := 0; i < 20; i++ {
		if resp, body := relayGet(t, addr, "/metrics", nil); resp.StatusCode == 200 && !strings.Contains(body, "container_memory_working_set_bytes") {
			t.Fatalf("scrape %d: %s", i, body)
		}
		time.Sleep(200 * time.Millisecond) // under the endpoint's rate limit
	}
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	kb := map[string]int64{}
	for _, line := range strings.Split(string(rollup), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			kb[k], _ = strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	t.Logf("relay after 20 scrapes: RSS %d KiB, PSS %d KiB (anonymous %d KiB, file %d KiB)", kb["Rss"], kb["Pss"], kb["Pss_Anon"], kb["Pss_File"])
	if kb["Pss_Anon"] > 256 {
		t.Errorf("the relay's anonymous memory is %d KiB; it holds one 32 KiB buffer", kb["Pss_Anon"])
	}
}
