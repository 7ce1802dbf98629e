package runscwrap

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
)

// listen creates the holder's socket, replacing a stale one.
func listen(sock string) (*net.UnixListener, error) {
	if err := os.MkdirAll(dirOf(sock), 0o700); err != nil {
		return nil, err
	}
	os.Remove(sock)
	return net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}

// startHolder runs cci-runsc as the holder of container id, with this
// process's stdio (the container's, as the runc shim gave it) and the
// listening socket as fd 3. It runs in a session of its own so that no
// signal meant for us reaches it.
func startHolder(inv *invocation, id string, ln *net.UnixListener) (*exec.Cmd, error) {
	f, err := ln.File()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{holdFlag, id, inv.runsc}, inv.node...)
	args = append(append(args, "--"), inv.global...)
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// hold is the holder: `--cci-hold ID RUNSC NODE-FLAGS... -- GLOBAL-FLAGS...`.
// It answers "start" by running runsc start with its stdio, then waits for
// the container and exits with its status; "abort N" ends it with 128+N.
// Its stdout and stderr are the container's: it never writes to them.
func hold(argv []string) int {
	if len(argv) < 3 {
		return 2
	}
	id := argv[0]
	inv, err := parse(append(argv[1:], "hold"))
	if err != nil {
		return 2
	}
	lnFile := os.NewFile(3, "holder-socket")
	l, err := net.FileListener(lnFile)
	lnFile.Close()
	if err != nil {
		return 2
	}
	ln := l.(*net.UnixListener)
	ln.SetUnlinkOnClose(true)
	defer ln.Close()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return 137
		}
		req, _ := bufio.NewReader(io.LimitReader(conn, 256)).ReadString('\n')
		req = strings.TrimSpace(req)
		switch {
		case req == "start":
			// The files themselves, not copies through a pipe: runsc
			// hands them to the container, so a pipe would stay open
			// and Run would wait on it until the container ends. What
			// runsc says on failure is in its --log, where the runc
			// shim reads it.
			status := inv.run(os.Stdin, os.Stdout, os.Stderr, "start", id)
			if status != 0 {
				fmt.Fprintf(conn, "exit status %d\n", status)
				conn.Close()
				continue // the runc shim deletes the container next
			}
			fmt.Fprintln(conn, "ok")
			conn.Close()
			ln.Close()
			return inv.wait(id)
		case strings.HasPrefix(req, "abort "):
			n, err := strconv.Atoi(strings.TrimPrefix(req, "abort "))
			if err != nil || n <= 0 || n > 64 {
				n = int(syscall.SIGKILL)
			}
			fmt.Fprintln(conn, "ok")
			conn.Close()
			return 128 + n
		default:
			fmt.Fprintf(conn, "unknown request %q\n", req)
			conn.Close()
		}
	}
}

// wait waits for the container with runsc wait and returns its exit status
// as runc's shim reports one: the code, or 128 + the signal.
func (inv *invocation) wait(id string) int {
	var out bytes.Buffer
	if inv.run(nil, &out, io.Discard, "wait", id) != 0 {
		return 137 // destroyed under us (runsc delete --force)
	}
	var res struct {
		ExitStatus int `json:"exitStatus"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return 137
	}
	return res.ExitStatus
}

// joinCgroups moves pid into the cgroups of the sandbox process: the runc
// shim reads a container's stats and OOM events from the cgroups of the pid
// it was given. Best effort: without it those come from the shim's own.
func joinCgroups(pid, sandboxPid int) {
	if cgroups.Mode() == cgroups.Unified {
		path, err := cgroup2.PidGroupPath(sandboxPid)
		if err != nil {
			return
		}
		if m, err := cgroup2.Load(path); err == nil {
			m.AddProc(uint64(pid))
		}
		return
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(sandboxPid))
	if err != nil {
		return
	}
	cg.AddProc(uint64(pid))
}
