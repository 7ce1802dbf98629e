package podmetrics

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cci-shim/cci-shim/internal/testutil"
)

// podNetns starts a process in a new network namespace with loopback up and
// one end of a veth pair (the other end in the host's namespace), like a
// CNI-configured pod, and returns the namespace's path.
func podNetns(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t, "network namespaces")
	for _, tool := range []string{"unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Unavailable(t, "%s not found", tool)
		}
	}
	cmd := exec.Command("unshare", "--net", "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	path := fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)
	// unshare execs sleep once the namespace exists.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		self, _ := os.Readlink("/proc/thread-self/ns/net")
		if l, err := os.Readlink(path); err == nil && l != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the test namespace did not appear")
		}
	}
	host := fmt.Sprintf("cpm%d", cmd.Process.Pid%100000)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	run("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", path)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	pid := strconv.Itoa(cmd.Process.Pid)
	run("nsenter", "-t", pid, "-n", "ip", "link", "set", "lo", "up")
	run("nsenter", "-t", pid, "-n", "ip", "link", "set", "eth0", "up")
	return path
}

func TestNetNSListen(t *testing.T) {
	path := podNetns(t)
	ns, err := OpenNetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ln, err := ns.Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, NewHandler(NewCollector(&fakeSource{s: fullSnapshot()}, nil), nil), nil)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	// From the host's namespace the port is not there.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		t.Fatalf("port %d reachable on the host's loopback", port)
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("host loopback: %v", err)
	}
	// Inside the pod's namespace it serves the metrics.
	var status int
	if err := ns.inNS(func() error {
		// Dial here, on the thread in the namespace (an http.Client
		// would dial from another goroutine, in the host's namespace).
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		status = resp.StatusCode
		return nil
	}); err != nil || status != 200 {
		t.Fatalf("GET from inside the namespace: %d, %v", status, err)
	}

	// Its interface counters are the namespace's own: eth0, no loopback.
	nd, err := ns.NetDev()
	if err != nil {
		t.Fatal(err)
	}
	if len(nd) != 1 || nd[0].Name != "eth0" {
		t.Errorf("NetDev = %+v; want eth0 alone", nd)
	}
	// No thread of this process is left in the pod's namespace (a
	// thread ends just after its goroutine has answered).
	self, _ := os.Readlink("/proc/thread-self/ns/net")
	var left []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = nil
		tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
		for _, tsk := range tasks {
			if l, err := os.Readlink(tsk); err == nil && l != self {
				left = append(left, tsk+" in "+l)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("threads left outside the host's namespace %s: %v", self, left)
	}
}

func TestOpenNetNSRefuses(t *testing.T) {
	testutil.RequireRoot(t, "reading namespace files")
	file := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(file, nil, 0o600)
	for _, tc := range []struct{ path, want string }{
		{"/proc/self/ns/net", "host's network namespace"},
		{"/proc/self/ns/pid", "not a network namespace"},
		{file, "not a namespace"},
		{"/nonexistent", "no such file"},
	} {
		ns, err := OpenNetNS(tc.path)
		if err == nil {
			ns.Close()
			t.Errorf("OpenNetNS(%s) accepted", tc.path)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenNetNS(%s) = %v; want %q", tc.path, err, tc.want)
		}
	}
}
