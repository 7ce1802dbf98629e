//go:build linux

package e2eenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	serveTimeout = 30 * time.Second
	ctrTimeout   = 2 * time.Minute
)

// containerdPath is containerd's PATH: the cci shim's dir and the tools dir first, so that
// `--runtime io.containerd.cci.v2` resolves to the freshly built containerd-shim-cci-v2 and
// io.containerd.runc.v2 to the pinned containerd-shim-runc-v2.
func (e *Env) containerdPath() string {
	return e.BinDir + ":" + e.ToolsDir + ":" + systemPath
}

// startContainerd starts containerd with its output in logPath and waits until it serves.
func (e *Env) startContainerd(opts Options) error {
	logf, err := os.OpenFile(e.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	defer logf.Close() // the child has its own copy

	cmd := exec.Command(e.tools.containerd, "--config", e.ConfigPath)
	cmd.Dir = e.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	env := []string{
		"PATH=" + e.containerdPath(),
		NodeConfigEnv + "=" + e.NodeConfigPath,
		"HOME=/root",
		"TMPDIR=" + e.Dir,
	}
	cmd.Env = append(env, opts.ExtraEnv...)
	// Own process group: a ^C to the test does not hit containerd before teardown does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting containerd: %w", err)
	}
	e.cmd = cmd
	exited := make(chan struct{})
	e.exited = exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	deadline := time.Now().Add(serveTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("containerd exited during startup: %v", cmd.ProcessState)
		default:
		}
		if err := e.serving(); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("containerd not serving on %s after %v: %w", e.Address, serveTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Make blockfile the default snapshotter of the test namespace for the client and ctr
	// (both resolve an empty snapshotter name through this namespace label).
	namespacesToLabel := []string{e.Namespace}
	if e.cri {
		namespacesToLabel = append(namespacesToLabel, CRINamespace)
	}
	c, err := e.containerdClient()
	if err != nil {
		return err
	}
	ns := c.NamespaceService()
	for _, n := range namespacesToLabel {
		labels := map[string]string{defaults.DefaultSnapshotterNSLabel: Snapshotter}
		if err := ns.Create(e.ctx, n, labels); err != nil {
			if err := ns.SetLabel(e.ctx, n, defaults.DefaultSnapshotterNSLabel, Snapshotter); err != nil {
				return fmt.Errorf("labelling namespace %s: %w", n, err)
			}
		}
	}
	return nil
}

func (e *Env) serving() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := client.New(e.Address, client.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("not serving")
	}
	return nil
}

// importImages imports the test image archive into the test namespace (and k8s.io with CRI)
// and checks that both images are unpacked for the blockfile snapshotter.
func (e *Env) importImages() error {
	nss := []string{e.Namespace}
	if e.cri {
		nss = append(nss, CRINamespace)
	}
	for _, ns := range nss {
		if _, stderr, err := e.CtrIn(ns, "images", "import", e.ImageArchive); err != nil {
			return fmt.Errorf("ctr -n %s images import: %w: %s", ns, err, stderr)
		}
		ctx := namespaces.WithNamespace(e.ctx, ns)
		for _, name := range []string{e.Image, e.PauseImage} {
			c, err := e.containerdClient()
			if err != nil {
				return err
			}
			img, err := c.GetImage(ctx, name)
			if err != nil {
				return fmt.Errorf("image %s in namespace %s after import: %w", name, ns, err)
			}
			ok, err := img.IsUnpacked(ctx, Snapshotter)
			if err != nil {
				return fmt.Errorf("checking unpack of %s in %s: %w", name, ns, err)
			}
			if !ok {
				return fmt.Errorf("image %s in namespace %s is not unpacked for %s", name, ns, Snapshotter)
			}
		}
	}
	if e.cri {
		return e.waitCRIImages()
	}
	return nil
}

// waitCRIImages waits until the CRI plugin has picked up the imported images (it learns of them
// from image events, asynchronously) and has pinned the pause image.
func (e *Env) waitCRIImages() error {
	_, img, err := e.criClients()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	for _, name := range []string{e.Image, e.PauseImage} {
		for {
			st, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
			if err == nil && st.Image != nil && (name != e.PauseImage || st.Image.Pinned) {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("CRI does not see image %s (pinned if pause) after import: status %v, %w", name, st, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// Ctr runs the real ctr binary against the env's containerd in the env's namespace.
// The snapshotter defaults to blockfile (CONTAINERD_SNAPSHOTTER).
func (e *Env) Ctr(args ...string) (stdout, stderr string, err error) {
	return e.CtrIn(e.Namespace, args...)
}

// CtrRun runs `ctr run --snapshotter blockfile args...` in the env's namespace.
func (e *Env) CtrRun(args ...string) (stdout, stderr string, err error) {
	return e.Ctr(append([]string{"run", "--snapshotter", Snapshotter}, args...)...)
}

// CtrIn is Ctr in namespace ns (e.g. CRINamespace).
func (e *Env) CtrIn(ns string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(e.ctx, ctrTimeout)
	defer cancel()
	full := append([]string{"--address", e.Address, "--namespace", ns}, args...)
	cmd := exec.CommandContext(ctx, e.tools.ctr, full...)
	cmd.Dir = e.Dir
	cmd.Env = []string{
		"PATH=" + e.containerdPath(),
		"HOME=/root",
		"CONTAINERD_SNAPSHOTTER=" + Snapshotter,
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("ctr %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), err
}

// CRI returns CRI clients on Address. Start must have had Options.CRI. The connection is made
// on first use and closed at teardown.
func (e *Env) CRI() (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	e.t.Helper()
	if !e.cri {
		e.t.Fatalf("e2eenv: CRI() needs Options{CRI: true}")
	}
	rt, img, err := e.criClients()
	if err != nil {
		e.t.Fatalf("e2eenv: %v", err)
	}
	return rt, img
}

func (e *Env) criClients() (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.criConn == nil {
		conn, err := grpc.NewClient("unix://"+e.Address, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, fmt.Errorf("CRI connection: %w", err)
		}
		e.criConn = conn
	}
	return runtimeapi.NewRuntimeServiceClient(e.criConn), runtimeapi.NewImageServiceClient(e.criConn), nil
}

// ContainerdPID is containerd's pid, or 0 before start and after it exited (tests may kill it
// to simulate a crash; teardown copes).
func (e *Env) ContainerdPID() int {
	if e.cmd == nil || e.cmd.Process == nil {
		return 0
	}
	select {
	case <-e.exited:
		return 0
	default:
		return e.cmd.Process.Pid
	}
}

// stateDirs are the dirs in which a socket left behind is a leak.
func (e *Env) stateDirs() []string {
	return []string{e.containerdState, e.shimSocketDir, e.StateDir, filepath.Join(e.containerdRoot, "io.containerd.grpc.v1.cri")}
}
