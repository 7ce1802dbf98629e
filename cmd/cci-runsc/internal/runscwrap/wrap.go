package runscwrap

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// holdFlag marks the holder's command line (cci-runsc re-run by itself).
const holdFlag = "--cci-hold"

// Annotations that place a container in a pod (containerd's CRI).
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	containerTypeContainer  = "container"
)

// Main runs cci-runsc with its arguments and returns the exit status.
func Main(argv []string) int {
	if len(argv) > 0 && argv[0] == holdFlag {
		return hold(argv[1:])
	}
	inv, err := parse(argv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cci-runsc:", err)
		return 2
	}
	switch inv.cmd {
	case "create":
		return inv.create()
	case "start":
		return inv.start()
	case "kill":
		return inv.kill()
	case "delete":
		return inv.delete()
	}
	return inv.exec()
}

// exec replaces cci-runsc with runsc running the same subcommand.
func (inv *invocation) exec() int {
	argv := append([]string{inv.runsc}, inv.runscArgs(inv.cmd, inv.args...)...)
	err := syscall.Exec(inv.runsc, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "cci-runsc: exec %s: %v\n", inv.runsc, err)
	return 127
}

// run runs runsc with the given stdio and returns its exit status.
func (inv *invocation) run(stdin io.Reader, stdout, stderr io.Writer, sub string, args ...string) int {
	cmd := exec.Command(inv.runsc, inv.runscArgs(sub, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	return exitStatus(cmd.Run())
}

func exitStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 127
}

// holderSocket is where the holder of container id listens. Unix socket
// paths are short (108 bytes), so the id is hashed.
func (inv *invocation) holderSocket(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(inv.root, ".cci", hex.EncodeToString(sum[:8]))
}

// create runs runsc create. A container joining a running sandbox (a CRI
// app container) gets a holder, whose pid the runc shim then reaps.
func (inv *invocation) create() int {
	c, err := parseCreate(inv.args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cci-runsc:", err)
		return 2
	}
	if !joinsSandbox(c.bundle) || c.consoleSocket != "" {
		// A sandbox's first container takes its stdio at create and
		// its pid (the sandbox's) exits with it. A terminal's console
		// is handed over at create too.
		return inv.exec()
	}
	sock := inv.holderSocket(c.id)
	ln, err := listen(sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cci-runsc: holder socket:", err)
		return 1
	}
	holder, err := startHolder(inv, c.id, ln)
	ln.SetUnlinkOnClose(false) // the socket is the holder's now
	ln.Close()
	if err != nil {
		os.Remove(sock)
		fmt.Fprintln(os.Stderr, "cci-runsc: starting holder:", err)
		return 1
	}
	fail := func(status int) int {
		holder.Process.Kill()
		holder.Wait()
		os.Remove(sock)
		return status
	}
	if status := inv.run(os.Stdin, os.Stdout, os.Stderr, "create", inv.args...); status != 0 {
		return fail(status)
	}
	if c.pidFile != "" {
		if data, err := os.ReadFile(c.pidFile); err == nil {
			if sandboxPid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
				joinCgroups(holder.Process.Pid, sandboxPid)
			}
		}
		if err := writePidFile(c.pidFile, holder.Process.Pid); err != nil {
			fmt.Fprintln(os.Stderr, "cci-runsc: writing pid file:", err)
			inv.run(nil, io.Discard, io.Discard, "delete", "--force", c.id)
			return fail(1)
		}
	}
	// The holder outlives us: the runc shim, a subreaper, inherits it.
	holder.Process.Release()
	return 0
}

// joinsSandbox reports whether the bundle's container joins a running
// sandbox rather than starting one.
func joinsSandbox(bundle string) bool {
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return false
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	return json.Unmarshal(data, &spec) == nil && spec.Annotations[annotationContainerType] == containerTypeContainer
}

func writePidFile(path string, pid int) error {
	tmp := path + ".cci"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// start asks the container's holder, if it has one, to start it.
func (inv *invocation) start() int {
	id := containerID(inv.cmd, inv.args)
	reply, err := ask(inv.holderSocket(id), "start")
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
		return inv.exec() // no holder: runsc start as it is
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cci-runsc: start through holder:", err)
		return 1
	}
	if reply != "ok" {
		fmt.Fprintln(os.Stderr, "cci-runsc: runsc start:", reply)
		return 1
	}
	return 0
}

// kill signals the container. A container that was created and never
// started is destroyed instead, which ends its pid (the holder's or the
// sandbox's) as a kill would: runsc refuses to signal it (20221219), or
// accepts the signal and leaves it created (2026), and either way the runc
// shim, which kills before it deletes, would wait for an exit that never
// comes.
func (inv *invocation) kill() int {
	id := containerID(inv.cmd, inv.args)
	if inv.state(id) == "created" {
		if st := inv.run(nil, io.Discard, os.Stderr, "delete", "--force", id); st != 0 {
			return st
		}
		ask(inv.holderSocket(id), "abort "+signalNumber(inv.args))
		return 0
	}
	var errOut bytes.Buffer
	status := inv.run(nil, os.Stdout, &errOut, "kill", inv.args...)
	if status == 0 {
		return 0
	}
	if st := inv.state(id); st == "stopped" || st == "" {
		// The container (or its whole sandbox) is gone. runc says
		// "container not running", which the runc shim takes for "already
		// finished"; runsc says "sandbox is not running", which it takes
		// for a failure to retry.
		fmt.Fprintf(os.Stderr, "container not running: %s", errOut.Bytes())
		return status
	}
	os.Stderr.Write(errOut.Bytes())
	return status
}

// delete runs runsc delete and lets the container's holder go, if it is
// still waiting for a start that will not come.
func (inv *invocation) delete() int {
	status := inv.run(os.Stdin, os.Stdout, os.Stderr, "delete", inv.args...)
	ask(inv.holderSocket(containerID(inv.cmd, inv.args)), "abort 9")
	return status
}

// state returns runsc's status of the container ("created", "running",
// "stopped"), or "" when runsc does not know it.
func (inv *invocation) state(id string) string {
	var out bytes.Buffer
	if inv.run(nil, &out, io.Discard, "state", id) != 0 {
		return ""
	}
	var st struct {
		Status string `json:"status"`
	}
	json.Unmarshal(out.Bytes(), &st)
	return st.Status
}

// signalNumber is kill's signal as a number (runc's shim sends numbers).
func signalNumber(args []string) string {
	if n := len(args); n > 0 {
		if _, err := strconv.Atoi(args[n-1]); err == nil {
			return args[n-1]
		}
	}
	return "9"
}

// ask sends one request line to a holder and returns its one-line reply.
func ask(sock, req string) (string, error) {
	if _, err := os.Stat(sock); err != nil {
		return "", err
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(req + "\n")); err != nil {
		return "", err
	}
	reply, err := io.ReadAll(io.LimitReader(conn, 64<<10))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(reply)), nil
}
