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

	"golang.org/x/sys/unix"

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

// TestRelay runs the relay loop and ServeRelay joined by pipes, as the
// shim joins them through the relay's stdin and stdout.
func TestRelay(t *testing.T) {
	fd, err := relay.Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	sa, _ := unix.Getsockname(fd)
	addr := "127.0.0.1:" + strconv.Itoa(sockPort(sa))

	reqR, reqW := io.Pipe()   // relay → shim
	respR, respW := io.Pipe() // shim → relay
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Serve(fd, respR, reqW) }()
	src := &fakeSource{s: fullSnapshot()}
	shimDone := make(chan error, 1)
	go func() { shimDone <- ServeRelay(reqR, respW, NewHandler(NewRegistry(src, nil), nil)) }()

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

	// Garbage and a stalled caller lose their connection; the relay goes on.
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
	c.Write([]byte(strings.Repeat("x", relay.MaxRequest+1)))
	io.Copy(io.Discard, c) // closed by the relay
	c.Close()
	if resp, _ := relayGet(t, addr, "/metrics", nil); resp.StatusCode != 200 && resp.StatusCode != 429 {
		t.Errorf("after bad callers: %d", resp.StatusCode)
	}

	// The shim going away ends the relay.
	respW.Close()
	reqR.Close()
	go func() {
		if c, err := net.Dial("tcp", addr); err == nil {
			fmt.Fprint(c, "GET /metrics HTTP/1.1\r\n\r\n")
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	select {
	case err := <-relayDone:
		if err == nil {
			t.Error("relay returned nil after its stdio closed")
		}
	case <-time.After(10 * time.Second):
		t.Error("relay still running after its stdio closed")
	}
}

func sockPort(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet6:
		return a.Port
	case *unix.SockaddrInet4:
		return a.Port
	}
	return 0
}

// TestRelayBinary runs cmd/cci-podmetrics as the shim runs it, with its
// stdin and stdout as the relay's channel, and measures its memory.
func TestRelayBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), RelayBinary)
	build := exec.Command("go", "build", "-o", bin, "../cmd/cci-podmetrics")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the relay: %v\n%s", err, out)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	cmd := exec.Command(bin, "-port", strconv.Itoa(port))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	go ServeRelay(stdout, stdin, NewHandler(NewRegistry(&fakeSource{s: fullSnapshot()}, nil), nil))
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay does not listen")
		}
	}
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
	if kb["Rss"] > 2048 {
		t.Errorf("the relay's RSS is %d KiB; the pod's budget is 2 MiB", kb["Rss"])
	}
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("relay exit after its stdin closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		// It waits in accept; the next connection sees the closed stdin.
		if c, err := net.Dial("tcp", addr); err == nil {
			fmt.Fprint(c, "GET /metrics HTTP/1.1\r\n\r\n")
			c.Close()
		}
		if err := <-done; err != nil {
			t.Errorf("relay exit after its stdin closed: %v", err)
		}
	}
}
