//go:build linux

// Package e2eenv starts a private containerd for end-to-end tests: its own root, state and
// sockets in a short temp dir, the blockfile snapshotter on a loop-mounted XFS image with
// reflink, a test image built from Debian's busybox-static, optionally CRI with a link-local CNI
// bridge, and a teardown that leaves nothing behind (and can prove it with Leaks).
//
// It is for tests under tests/ only: it needs root, loop devices and the containerd binaries,
// and it skips (or, with CI=true, fails) when they are missing. It is not a library for
// production code and it never touches the host's own containerd.
package e2eenv

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"google.golang.org/grpc"
)

const (
	// ImageName is the busybox test image imported into every env.
	ImageName = "localhost/cci/busybox:test"
	// PauseImageName is the test pause image: /bin/sh that exits 0 on SIGTERM or SIGINT.
	PauseImageName = "localhost/cci/pause:test"
	// CRINamespace is the containerd namespace the CRI plugin works in.
	CRINamespace = "k8s.io"
	// Snapshotter is the snapshotter every env uses (the default for ctr, the client and CRI).
	Snapshotter = "blockfile"
	// CCIRuntime is the runtime type of the cci shim; CRI handler "cci" maps to it.
	CCIRuntime = "io.containerd.cci.v2"
	// RuncRuntime is the runtime type of containerd's runc shim; CRI handler "runc".
	RuncRuntime = "io.containerd.runc.v2"
	// CCIShimBinary and RuncShimBinary are the shim binaries containerd starts for them.
	CCIShimBinary  = "containerd-shim-cci-v2"
	RuncShimBinary = "containerd-shim-runc-v2"
	// NodeConfigEnv is the variable, set in containerd's (and so every shim's) environment,
	// that holds the path of the cci shim's node config.
	NodeConfigEnv = "CCI_SHIM_CONFIG"
)

// TB is the part of testing.TB an env uses. Programs (the demo behind
// `make run`, ccibench) run an env through their own implementation.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	Failed() bool
}

// Options says what environment a test needs. The zero value is a plain containerd without CRI.
type Options struct {
	// NodeConfig is added to the cci shim's node config after the env's own settings
	// (nodeConfigBase: the runc backend, and every path the shims use pinned inside Dir).
	// Those are root-level dotted keys, so NodeConfig may start with more of them
	// (`gpu.inventory = "fake"`, `backend.binary = "..."`) and then add tables with headers
	// ([throttle], [gpu.drivers."v"]). "{{StateDir}}" and "{{Dir}}" are replaced by
	// Env.StateDir and Env.Dir. The whole is written to Env.NodeConfigPath, exported as
	// CCI_SHIM_CONFIG.
	NodeConfig string
	// ExtraContainerdConfig is containerd TOML loaded through `imports` after the generated
	// config, so it can override any key of it (tables are merged, not replaced).
	ExtraContainerdConfig string
	// CRI enables the CRI plugin, the CNI bridge and the image import into namespace k8s.io.
	CRI bool
	// ScratchSize is the size of the blockfile scratch filesystem, i.e. of every container's
	// root filesystem. Default 20 GiB.
	ScratchSize int64
	// LogLevel is containerd's log level. Default "debug".
	LogLevel string
	// ExtraEnv is added to containerd's environment (and so to every shim's); it can override
	// PATH, CCI_SHIM_CONFIG and the rest.
	ExtraEnv []string
	// Backend is the node config's backend lines: root-level dotted keys such as
	// `backend.kind = "gvisor"` and `backend.gvisor.runsc = "..."`. Default
	// `backend.kind = "runc"`.
	Backend string
	// DefaultPolicyRoots leaves policy.kubelet_root, policy.containerd_root and
	// policy.containerd_state out of the node config, so that the shims use their defaults
	// (/var/lib/kubelet, ...) as on a node whose operator configured none, although the env's
	// containerd (and a kubelet under Dir) keep their files elsewhere.
	DefaultPolicyRoots bool
}

// Env is one running containerd. Its fields are read-only after Start.
type Env struct {
	Dir            string // the temp dir everything lives in
	StateDir       string // a dir for the cci shim's state (Dir/cci); node configs should use it
	Address        string // containerd's gRPC socket
	TTRPCAddress   string // containerd's ttrpc socket
	Namespace      string // the test namespace (unique per env); images are imported into it
	Image          string // ImageName
	PauseImage     string // PauseImageName
	ConfigPath     string // the generated containerd config
	NodeConfigPath string // the cci shim node config (value of CCI_SHIM_CONFIG)
	ImageArchive   string // the OCI layout tar holding Image and PauseImage
	ToolsDir       string // where containerd, ctr and containerd-shim-runc-v2 are
	BinDir         string // where containerd-shim-cci-v2 is expected
	BridgeName     string // the CNI bridge (CRI only)
	PodSubnet      string // the CNI bridge's /24 (CRI only), e.g. 169.254.77.0/24

	t     TB
	tools toolPaths
	cri   bool
	opts  Options // as started, for RestartContainerd

	containerdRoot  string
	containerdState string
	shimSocketDir   string
	logPath         string
	xfsImage        string
	xfsMount        string
	xfsLoop         string

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for

	ctx    context.Context // namespaced; cancelled at teardown
	cancel context.CancelFunc

	mu      sync.Mutex       // guards the fields below
	client  *client.Client   // lazily created, closed at teardown
	criConn *grpc.ClientConn // lazily created, closed at teardown
	stopped bool
	kept    map[int]bool // pids of KeepProcess
}

// Start brings up a fresh containerd in a temp dir and registers its teardown with t.Cleanup.
// It skips the test when the host lacks what the env needs (fails instead when CI=true).
func Start(t TB, opts Options) *Env {
	t.Helper()
	tools := checkPreconditions(t, opts)
	if opts.ScratchSize == 0 {
		opts.ScratchSize = 20 << 30
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "debug"
	}

	began := time.Now()
	reapStale(t, tools)
	// Unix socket paths are limited to 108 bytes and containerd puts shim sockets at
	// <socket_dir>/<64 hex>, with socket_dir at most 42 bytes: keep Dir short, not t.TempDir().
	dir, err := os.MkdirTemp("/tmp", "cci-e2e-")
	if err != nil {
		t.Fatalf("e2eenv: creating temp dir: %v", err)
	}
	if err := writeOwner(dir); err != nil {
		_ = os.Remove(dir)
		t.Fatalf("e2eenv: %v", err)
	}
	e := layout(t, dir)
	e.ToolsDir, e.BinDir, e.tools, e.cri, e.opts = tools.toolsDir, tools.binDir, tools, opts.CRI, opts
	close(e.exited) // nothing to wait for until containerd starts
	e.ctx, e.cancel = context.WithCancel(namespaces.WithNamespace(context.Background(), e.Namespace))
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("e2eenv: teardown: %v", err)
		}
	})
	t.Logf("e2eenv: dir %s, namespace %s, tools %s, shim bin dir %s", dir, e.Namespace, tools.toolsDir, tools.binDir)

	for _, d := range []string{e.StateDir, e.containerdRoot, e.containerdState, e.shimSocketDir, e.xfsMount} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatalf("e2eenv: %v", err)
		}
	}
	if err := e.mountRunDirs(); err != nil {
		t.Fatalf("e2eenv: %v", err)
	}
	step := time.Now()
	if err := e.setupStorage(opts.ScratchSize); err != nil {
		t.Fatalf("e2eenv: storage: %v", err)
	}
	t.Logf("e2eenv: XFS (reflink) on %s at %s, %d GiB ext4 scratch: %v", e.xfsLoop, e.xfsMount, opts.ScratchSize>>30, time.Since(step).Round(time.Millisecond))

	step = time.Now()
	if err := buildImageArchive(e.ImageArchive); err != nil {
		t.Fatalf("e2eenv: building test image: %v", err)
	}
	t.Logf("e2eenv: built %s and %s into %s: %v", e.Image, e.PauseImage, e.ImageArchive, time.Since(step).Round(time.Millisecond))

	if err := e.writeConfigs(opts); err != nil {
		t.Fatalf("e2eenv: %v", err)
	}
	step = time.Now()
	if err := e.startContainerd(opts); err != nil {
		t.Fatalf("e2eenv: %v\n%s", err, e.logTail(60))
	}
	t.Logf("e2eenv: containerd (pid %d) serving on %s: %v", e.cmd.Process.Pid, e.Address, time.Since(step).Round(time.Millisecond))

	step = time.Now()
	if err := e.importImages(); err != nil {
		t.Fatalf("e2eenv: importing images: %v\n%s", err, e.logTail(60))
	}
	t.Logf("e2eenv: images imported into %s: %v", e.importedNamespaces(), time.Since(step).Round(time.Millisecond))
	t.Logf("e2eenv: ready in %v", time.Since(began).Round(time.Millisecond))
	return e
}

// Context returns a context in the env's namespace, cancelled at teardown.
func (e *Env) Context() context.Context { return e.ctx }

// Client returns a containerd client for Address with the env's namespace as default.
// It is created on first use and closed at teardown; do not close it.
func (e *Env) Client() *client.Client {
	e.t.Helper()
	c, err := e.containerdClient()
	if err != nil {
		e.t.Fatalf("e2eenv: %v", err)
	}
	return c
}

func (e *Env) containerdClient() (*client.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.client == nil {
		c, err := client.New(e.Address, client.WithDefaultNamespace(e.Namespace), client.WithTimeout(10*time.Second))
		if err != nil {
			return nil, fmt.Errorf("containerd client: %w", err)
		}
		e.client = c
	}
	return e.client, nil
}

// ContainerdLog returns containerd's log (stdout and stderr) so far.
func (e *Env) ContainerdLog() string {
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", e.logPath, err)
	}
	return string(b)
}

// SetNodeConfig rewrites the cci shim node config (placeholders as in Options.NodeConfig).
// Shims started afterwards read the new file.
//
// Like Options.NodeConfig, toml comes after the env's own settings.
func (e *Env) SetNodeConfig(toml string) error {
	return writeFileAtomic(e.NodeConfigPath, []byte(e.expand(e.nodeConfig()+toml)))
}

// nodeConfig is the env's own part of the node config, placeholders unexpanded: the base, the
// backend's lines and, unless Options.DefaultPolicyRoots, the policy roots.
func (e *Env) nodeConfig() string {
	backend := e.opts.Backend
	if backend == "" {
		backend = `backend.kind = "runc"`
	}
	if !strings.HasSuffix(backend, "\n") {
		backend += "\n"
	}
	base := strings.Replace(nodeConfigBase, "{{Backend}}\n", backend, 1)
	if !e.opts.DefaultPolicyRoots {
		base += nodeConfigPolicyRoots
	}
	return base
}

// SetBackend replaces Options.Backend (the node config's backend lines; "" for runc) and
// rewrites the node config with toml after the env's own settings: shims started afterwards
// run on that backend.
func (e *Env) SetBackend(backend, toml string) error {
	e.mu.Lock()
	e.opts.Backend = backend
	e.mu.Unlock()
	return e.SetNodeConfig(toml)
}

// KeepProcess marks pid, a process the test started for the env (a kubelet, say), as part of
// the env while it runs: Leaks does not report it until Stop. Stop still kills it if it is
// left. The returned func undoes the mark (call it once the process has been stopped).
func (e *Env) KeepProcess(pid int) (forget func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kept == nil {
		e.kept = map[int]bool{}
	}
	e.kept[pid] = true
	return func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.kept, pid)
	}
}

// layout is the env living in dir: where everything of it is. Start and the
// reaper of dead test processes' envs share it.
func layout(t TB, dir string) *Env {
	suffix := strings.TrimPrefix(filepath.Base(dir), "cci-e2e-")
	return &Env{
		Dir:             dir,
		StateDir:        filepath.Join(dir, "cci"),
		Address:         filepath.Join(dir, "c.sock"),
		TTRPCAddress:    filepath.Join(dir, "c.sock.ttrpc"),
		Namespace:       "e2e-" + suffix,
		Image:           ImageName,
		PauseImage:      PauseImageName,
		ConfigPath:      filepath.Join(dir, "containerd.toml"),
		NodeConfigPath:  filepath.Join(dir, "cci-shim.toml"),
		ImageArchive:    filepath.Join(dir, "images.tar"),
		BridgeName:      bridgeName(suffix),
		PodSubnet:       podSubnet(suffix),
		t:               t,
		containerdRoot:  filepath.Join(dir, "root"),
		containerdState: filepath.Join(dir, "state"),
		shimSocketDir:   filepath.Join(dir, "s"),
		logPath:         filepath.Join(dir, "containerd.log"),
		xfsImage:        filepath.Join(dir, "xfs.img"),
		xfsMount:        filepath.Join(dir, "xfs"),
		exited:          make(chan struct{}),
	}
}

// nodeConfigBase is the start of every env's cci node config: the backend
// (Options.Backend, default runc), and every path a shim writes kept inside the env, so that tests,
// the demo and the bench never touch the host's /run/cci-shim, /var/lib or
// /var/log. Root-level dotted keys, so that what follows may add keys to the
// same tables.
const nodeConfigBase = `# Written by tests/e2eenv.
state_dir = "{{StateDir}}"
{{Backend}}
policy.volume_dir = "{{Dir}}/volumes"
logs.file_dir = "{{Dir}}/podlogs"
gpu.state_dir = "{{Dir}}/gpu"
`

// nodeConfigPolicyRoots follows nodeConfigBase unless Options.DefaultPolicyRoots: where the
// env's containerd and a kubelet under Dir (tests/kubeenv) keep a pod's own files.
const nodeConfigPolicyRoots = `policy.kubelet_root = "{{Dir}}/kubelet"
policy.containerd_root = "{{Dir}}/root"
policy.containerd_state = "{{Dir}}/state"
`

func (e *Env) expand(s string) string {
	return strings.NewReplacer("{{StateDir}}", e.StateDir, "{{Dir}}", e.Dir).Replace(s)
}

func (e *Env) importedNamespaces() string {
	if e.cri {
		return e.Namespace + " and " + CRINamespace
	}
	return e.Namespace
}

// logTail returns the last n lines of containerd's log, for failure messages.
func (e *Env) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(e.ContainerdLog(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- containerd log (tail) ---\n" + strings.Join(lines, "\n")
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// bridgeName derives a per-env CNI bridge name (IFNAMSIZ allows 15 bytes), so that envs in
// parallel test binaries do not share a bridge.
func bridgeName(suffix string) string {
	if len(suffix) > 8 {
		suffix = suffix[len(suffix)-8:]
	}
	return "cci-e2e" + suffix
}

// podSubnet derives a per-env /24 of the link-local range from the env's suffix (10–249 as the
// third octet, avoiding the ends of the range that hosts may use).
func podSubnet(suffix string) string {
	h := fnv.New32a()
	h.Write([]byte(suffix))
	return fmt.Sprintf("%s%d.0/24", CNISubnetPrefix, 10+h.Sum32()%240)
}
