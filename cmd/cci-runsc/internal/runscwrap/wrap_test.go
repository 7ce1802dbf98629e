package runscwrap

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary is also cci-runsc (the holder re-executes it): with
// CCI_RUNSC_MAIN set it runs Main instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("CCI_RUNSC_MAIN") != "" || (len(os.Args) > 1 && os.Args[1] == holdFlag) {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func TestParse(t *testing.T) {
	inv, err := parse([]string{"/usr/bin/runsc", "--platform=ptrace", "--network=sandbox", "--",
		"--root", "/run/r/k8s.io", "--log", "/b/log.json", "--log-format", "json", "--systemd-cgroup", "kill", "--all", "abc", "9"})
	if err != nil {
		t.Fatal(err)
	}
	want := &invocation{runsc: "/usr/bin/runsc", node: []string{"--platform=ptrace", "--network=sandbox"},
		global: []string{"--root", "/run/r/k8s.io", "--log", "/b/log.json", "--log-format", "json", "--systemd-cgroup"},
		root:   "/run/r/k8s.io", cmd: "kill", args: []string{"--all", "abc", "9"}}
	if !reflect.DeepEqual(inv, want) {
		t.Errorf("parse = %+v\nwant %+v", inv, want)
	}
	if got := containerID(inv.cmd, inv.args); got != "abc" {
		t.Errorf("kill's container id = %q", got)
	}
	if got := signalNumber(inv.args); got != "9" {
		t.Errorf("kill's signal = %q", got)
	}
	if got := inv.runscArgs("state", "abc"); strings.Join(got, " ") != "--platform=ptrace --network=sandbox --root /run/r/k8s.io --log /b/log.json --log-format json --systemd-cgroup state abc" {
		t.Errorf("runscArgs = %q", got)
	}
	for _, bad := range [][]string{{"runsc"}, {"--", "create"}, {"runsc", "--", "--root"}, {"runsc", "--", "--log", "x"}} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
	c, err := parseCreate([]string{"--bundle", "/b", "--pid-file=/b/init.pid", "--no-pivot", "id1"})
	if err != nil || c != (createArgs{bundle: "/b", pidFile: "/b/init.pid", id: "id1"}) {
		t.Errorf("parseCreate = %+v, %v", c, err)
	}
	for cmd, args := range map[string][]string{"start": {"id1"}, "delete": {"--force", "id1"}, "state": {"id1"}, "kill": {"id1"}} {
		if got := containerID(cmd, args); got != "id1" {
			t.Errorf("%s %q: id %q", cmd, args, got)
		}
	}
}

// fakeRunsc is a runsc that keeps each container's state in files under
// dir. Its "container" writes hello-<id> to the stdout start gave it, then
// exits with status 3 once dir/<id>.go exists. The exit file appears whole
// (renamed into place): a wait that saw it created but not yet written
// would print no status, and the holder would take that for a destroyed
// container (137).
const fakeRunsc = `#!/bin/sh
d=%DIR%
while [ "${1#--}" != "$1" ]; do
  case "$1" in --root|--log|--log-format) shift;; esac
  shift
done
cmd=$1; shift
echo "$cmd $*" >> $d/calls
case "$cmd" in
create)
  while [ $# -gt 1 ]; do case "$1" in --pid-file) pf=$2; shift;; esac; shift; done
  echo created > $d/$1.state; echo 1 > "$pf";;
start)
  echo running > $d/$1.state
  ( echo hello-$1; while [ ! -e $d/$1.go ]; do sleep 0.05; done; echo stopped > $d/$1.state; echo 3 > $d/$1.exit.new; mv $d/$1.exit.new $d/$1.exit ) </dev/null &;;
wait)
  while [ ! -e $d/$1.exit ]; do sleep 0.05; done
  echo "{\"id\":\"$1\",\"exitStatus\":$(cat $d/$1.exit)}";;
state)
  [ -e $d/$1.state ] || { echo "container does not exist" >&2; exit 1; }
  echo "{\"status\":\"$(cat $d/$1.state)\"}";;
kill)
  [ "$(cat $d/$1.state)" = running ] || { echo "cannot signal container in state created" >&2; exit 128; }
  touch $d/$1.go;;
delete)
  for a; do id=$a; done; rm -f $d/$id.state;;
esac
`

type fakeEnv struct {
	dir, runsc, root, bundle string
}

func newFakeEnv(t *testing.T, containerType string) fakeEnv {
	t.Helper()
	dir := t.TempDir()
	e := fakeEnv{dir: dir, runsc: filepath.Join(dir, "runsc"), root: filepath.Join(dir, "root"), bundle: filepath.Join(dir, "bundle")}
	if err := os.WriteFile(e.runsc, []byte(strings.ReplaceAll(fakeRunsc, "%DIR%", dir)), 0o755); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(e.bundle, 0o755)
	os.MkdirAll(e.root, 0o755)
	spec := `{"annotations":{"io.kubernetes.cri.container-type":"` + containerType + `"}}`
	if err := os.WriteFile(filepath.Join(e.bundle, "config.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// run runs cci-runsc with args and returns what it wrote to stderr (and to
// stdout, unless stdout takes it). Its stdio are files, as the runc shim
// gives them: a holder keeps them, so a pipe drained by a goroutine of ours
// would never see EOF.
func (e fakeEnv) run(t *testing.T, stdout *os.File, args ...string) (string, error) {
	t.Helper()
	out, err := os.CreateTemp(e.dir, "out-")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := e.wrapper(stdout, args...)
	if stdout == nil {
		cmd.Stdout = out
	}
	cmd.Stderr = out
	err = cmd.Run()
	data, _ := os.ReadFile(out.Name())
	return string(data), err
}

// wrapper runs cci-runsc (this binary) the way the runc shim would.
func (e fakeEnv) wrapper(stdout *os.File, args ...string) *exec.Cmd {
	self, _ := os.Executable()
	cmd := exec.Command(self, append([]string{e.runsc, "--platform=ptrace", "--", "--root", e.root, "--log", filepath.Join(e.dir, "log.json")}, args...)...)
	cmd.Env = append(os.Environ(), "CCI_RUNSC_MAIN=1")
	if stdout != nil {
		cmd.Stdout = stdout
	}
	return cmd
}

// TestHolder: a container joining a sandbox gets a holder whose pid goes in
// the pid file, which carries the create-time stdout into start and exits
// with the container's status.
func TestHolder(t *testing.T) {
	// Like the runc shim, inherit the orphaned holder to reap it.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a subreaper: %v", err)
	}
	e := newFakeEnv(t, "container")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(e.bundle, "init.pid")
	if out, err := e.run(t, w, "create", "--bundle", e.bundle, "--pid-file", pidFile, "c1"); err != nil {
		t.Fatalf("create: %v: %s", err, out)
	}
	w.Close() // the holder keeps its copy
	data, _ := os.ReadFile(pidFile)
	holder, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if holder <= 1 || unix.Kill(holder, 0) != nil {
		t.Fatalf("pid file holds %q, not a live holder", data)
	}
	if out, err := e.run(t, nil, "start", "c1"); err != nil {
		t.Fatalf("start: %v: %s", err, out)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "hello-c1\n" {
		t.Fatalf("the container wrote %q (%v) to the stdout given at create", line, err)
	}
	if out, err := e.run(t, nil, "kill", "c1", "15"); err != nil {
		t.Fatalf("kill: %v: %s", err, out)
	}
	var ws unix.WaitStatus
	done := make(chan error, 1)
	go func() { _, err := unix.Wait4(holder, &ws, 0, nil); done <- err }()
	select {
	case err := <-done:
		if err != nil || !ws.Exited() || ws.ExitStatus() != 3 {
			t.Errorf("holder ended %v (%v), want exit status 3", ws, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("holder did not exit after the container did")
	}
}

// TestKillCreated: a container created and never started is destroyed by
// kill, and its holder ends with 128+signal.
func TestKillCreated(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a subreaper: %v", err)
	}
	e := newFakeEnv(t, "container")
	pidFile := filepath.Join(e.bundle, "init.pid")
	if out, err := e.run(t, nil, "create", "--bundle", e.bundle, "--pid-file", pidFile, "c2"); err != nil {
		t.Fatalf("create: %v: %s", err, out)
	}
	data, _ := os.ReadFile(pidFile)
	holder, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if out, err := e.run(t, nil, "kill", "c2", "9"); err != nil {
		t.Fatalf("kill of a created container: %v: %s", err, out)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(holder, &ws, 0, nil); err != nil || ws.ExitStatus() != 137 {
		t.Errorf("holder ended %v (%v), want 137", ws, err)
	}
	calls, _ := os.ReadFile(filepath.Join(e.dir, "calls"))
	if !strings.Contains(string(calls), "delete --force c2") {
		t.Errorf("runsc calls:\n%s\nwant a forced delete", calls)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "c2.state")); err == nil {
		t.Error("the container still exists")
	}
}

// TestSandboxContainerPassesThrough: a sandbox's first container is runsc
// create as it is; a kill of a stopped one says what runc would.
func TestSandboxContainerPassesThrough(t *testing.T) {
	e := newFakeEnv(t, "sandbox")
	pidFile := filepath.Join(e.bundle, "init.pid")
	if out, err := e.run(t, nil, "create", "--bundle", e.bundle, "--pid-file", pidFile, "s1"); err != nil {
		t.Fatalf("create: %v: %s", err, out)
	}
	if data, _ := os.ReadFile(pidFile); strings.TrimSpace(string(data)) != "1" {
		t.Errorf("pid file %q, want runsc's own", data)
	}
	if entries, _ := os.ReadDir(filepath.Join(e.root, ".cci")); len(entries) != 0 {
		t.Errorf("a holder socket for a sandbox: %v", entries)
	}
	os.WriteFile(filepath.Join(e.dir, "s1.state"), []byte("stopped\n"), 0o644)
	out, err := e.run(t, nil, "kill", "s1", "15")
	if err == nil || !strings.Contains(string(out), "container not running") {
		t.Errorf("kill of a stopped container: %v: %s; want runc's \"container not running\"", err, out)
	}
}
