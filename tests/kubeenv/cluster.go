//go:build linux

// Package kubeenv starts a one-node Kubernetes cluster for end-to-end tests
// on top of tests/e2eenv: etcd, kube-apiserver and a kubelet whose
// container runtime is the env's containerd (CRI on, handler "cci" mapped
// to the freshly built cci shim). The packaged RuntimeClass
// (packaging/kubernetes/runtimeclass.yaml) is applied, so pods select the
// shim with runtimeClassName: cci; pods without one run on containerd's
// default runtime, runc. Tests create pods with client-go (Cluster.Client),
// run kubectl (Cluster.Kubectl: exec and logs go through the API server's
// proxy to the kubelet's streaming server), drop static pods into
// StaticPodDir, and register admission webhooks (RegisterMutatingWebhook).
//
// There is no scheduler and no controller manager: Cluster.CreatePod binds
// pods to the node itself, and EnsureNamespace creates what the controller
// manager would (the default service account, kube-root-ca.crt).
//
// Everything lives in the env's temp dir; the kubelet's host-wide traces
// (the /kubepods cgroups, links in /var/log/containers, its device-plugin
// socket under /var/lib/kubelet, the kernel tunables it sets) are removed or
// restored at teardown, and by the next Start when a test process died
// (hostStatePath). One kubelet runs on the machine at a time: Start takes
// LockPath and waits while another test process holds it.
//
// The node is named localhost: kubelet serves on 127.0.0.1 only, refuses a
// loopback node IP, and the API server reaches it by its Hostname address.
//
// The binaries come from scripts/k8s-tools.sh (`make k8s-tools`), in
// $CCI_K8S_DIR/bin (default <repo>/.tools/k8s/bin). Without them the test
// is skipped, or fails when CI=true. This package is for tests under tests/
// only; it is not a way to run Kubernetes in production.
package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cci-shim/cci-shim/internal/testutil"
	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TB is the part of testing.TB the cluster uses (e2eenv's).
type TB = e2eenv.TB

const (
	// NodeLabel is set on the node; the packaged RuntimeClass selects it.
	NodeLabel = "cci.io/runtime"
	// RuntimeClassCCI is the packaged RuntimeClass's name.
	RuntimeClassCCI = "cci"
	// K8sDirEnv names the dir scripts/k8s-tools.sh builds into (binaries in bin/).
	K8sDirEnv = "CCI_K8S_DIR"
)

// Options says what cluster a test needs.
type Options struct {
	// Env is the containerd env under the cluster; CRI is always on.
	Env e2eenv.Options
	// KubeletRoot is kubelet's --root-dir. Default <env dir>/kubelet, the
	// policy.kubelet_root of the env's node config (unless
	// Env.DefaultPolicyRoots leaves that out).
	KubeletRoot string
}

// Cluster is a running one-node cluster. Its exported fields are read-only
// after Start.
type Cluster struct {
	Env          *e2eenv.Env
	Dir          string // <env dir>/k8s: configs, logs, certificates, etcd data
	NodeName     string
	KubeletRoot  string // kubelet's --root-dir
	StaticPodDir string // kubelet's staticPodPath
	PodLogsDir   string // kubelet's podLogsDir (CRI log files)
	Kubeconfig   string // an admin (system:masters) kubeconfig, for kubectl
	APIServerURL string
	KubeletPort  int
	CA           *CA                   // signs every certificate of the cluster
	Client       *kubernetes.Clientset // admin client
	RESTConfig   *rest.Config          // admin client config

	// KubeletStartToReady is the time from starting kubelet to its node
	// being Ready.
	KubeletStartToReady time.Duration

	t         TB
	bins      binaries
	lock      *hostLock
	pkiDir    string
	caPath    string
	saKey     string
	saPub     string
	etcdURL   string
	adminCert KeyPair

	etcd, apiserver, kubelet *proc

	host     *hostState // the host before kubelet started; nil until then
	stopOnce sync.Once
	stopErr  error
}

// Start brings up containerd (e2eenv), etcd, kube-apiserver and kubelet,
// applies the packaged RuntimeClass and prepares namespace default. Its
// teardown is registered with t.Cleanup.
func Start(t TB, opts Options) *Cluster {
	t.Helper()
	began := time.Now()
	bins := findBinaries(t)
	lock, err := lockHost(t)
	if err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	c := &Cluster{t: t, bins: bins, lock: lock}
	// Registered first, so it runs last: after the env has stopped every
	// container, the pod cgroups are empty and can go.
	t.Cleanup(c.cleanHost)

	eo := opts.Env
	eo.CRI = true
	// kubelet's sandboxes get oom_score_adj -998 from CRI, which hosts that
	// refuse a negative value (this one does) fail in runc for the runc
	// handler; containerd clamps it to its own when told to.
	eo.ExtraContainerdConfig = e2eenv.CRIRestrictOOM + eo.ExtraContainerdConfig
	c.Env = e2eenv.Start(t, eo) // reaps the envs (and so the pods) of test processes that died
	if err := cleanStaleHost(t); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	c.Dir = filepath.Join(c.Env.Dir, "k8s")
	c.pkiDir = filepath.Join(c.Dir, "pki")
	// kubelet serves on 127.0.0.1 only; the API server reaches it through
	// the node's Hostname address, its name (see startAPIServer).
	c.NodeName = "localhost"
	c.KubeletRoot = opts.KubeletRoot
	if c.KubeletRoot == "" {
		c.KubeletRoot = filepath.Join(c.Env.Dir, "kubelet")
	}
	c.StaticPodDir = filepath.Join(c.Dir, "manifests")
	c.PodLogsDir = filepath.Join(c.Dir, "pod-logs")
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	if err := os.MkdirAll(c.Dir, 0o750); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("kubeenv: teardown: %v", err)
		}
	})

	step := time.Now()
	if err := c.writePKI(); err != nil {
		t.Fatalf("kubeenv: certificates: %v", err)
	}
	if err := c.startEtcd(); err != nil {
		t.Fatalf("kubeenv: %v\n%s", err, c.tail(c.etcd))
	}
	t.Logf("kubeenv: etcd on %s: %v", c.etcdURL, time.Since(step).Round(time.Millisecond))
	step = time.Now()
	if err := c.startAPIServer(); err != nil {
		t.Fatalf("kubeenv: %v\n%s", err, c.tail(c.apiserver))
	}
	t.Logf("kubeenv: kube-apiserver on %s: %v", c.APIServerURL, time.Since(step).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.applyRuntimeClass(ctx); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	if err := c.EnsureNamespace(ctx, "default"); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}

	if c.host, err = captureHostState(); err != nil {
		t.Fatalf("kubeenv: %v", err)
	}
	if err := c.startKubelet(); err != nil {
		t.Fatalf("kubeenv: %v\n%s", err, c.tail(c.kubelet))
	}
	t.Logf("kubeenv: node %s Ready, kubelet on 127.0.0.1:%d, root %s: start to Ready %v",
		c.NodeName, c.KubeletPort, c.KubeletRoot, c.KubeletStartToReady.Round(time.Millisecond))
	t.Logf("kubeenv: cluster ready in %v; kubectl --kubeconfig %s", time.Since(began).Round(time.Millisecond), c.Kubeconfig)
	return c
}

func (c *Cluster) newClient() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("client config: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	c.RESTConfig, c.Client = cfg, cs
	return nil
}

func (c *Cluster) tail(p *proc) string {
	if p == nil {
		return ""
	}
	return p.logTail(60)
}

// Logs returns the tails of the components' logs (n lines each), for
// failure messages.
func (c *Cluster) Logs(n int) string {
	var parts []string
	for _, p := range []*proc{c.etcd, c.apiserver, c.kubelet} {
		if p != nil {
			parts = append(parts, p.logTail(n))
		}
	}
	return strings.Join(parts, "\n")
}

// Stop deletes every pod (through the API server, then the static pods'
// manifests) and waits until kubelet has stopped them, then stops kubelet,
// the API server and etcd. It is idempotent and registered with t.Cleanup
// by Start; the env's teardown follows it, and the host clean-up (cgroups,
// log links, kernel tunables, the lock) comes last.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		began := time.Now()
		var errs []error
		if c.t.Failed() {
			c.t.Logf("kubeenv: test failed; %s", c.Logs(80))
		}
		if c.kubelet != nil && c.kubelet.running() && c.apiserver != nil && c.apiserver.running() {
			if err := c.deleteAllPods(); err != nil {
				c.t.Logf("kubeenv: teardown: %v (the env's teardown removes what is left)", err)
			}
		}
		for _, p := range []*proc{c.kubelet, c.apiserver, c.etcd} {
			if err := p.stop(15 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		c.t.Logf("kubeenv: teardown took %v", time.Since(began).Round(time.Millisecond))
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// deleteAllPods removes the static pods' manifests and deletes every pod
// of the node, then waits until kubelet reports none left.
func (c *Cluster) deleteAllPods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	manifests, _ := filepath.Glob(filepath.Join(c.StaticPodDir, "*"))
	for _, m := range manifests {
		_ = os.Remove(m)
	}
	pods, err := c.nodePods(ctx)
	if err != nil {
		return err
	}
	for _, p := range pods {
		_ = c.deletePod(ctx, p.Namespace, p.Name, 2)
	}
	for {
		pods, err := c.nodePods(ctx)
		if err == nil && len(pods) == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pods still on the node after deleting them: %d (%v)", len(pods), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// cleanHost runs after the env's teardown: it removes kubelet's cgroups,
// log links and device-plugin socket, restores the kernel tunables kubelet
// changed, and releases the lock.
func (c *Cluster) cleanHost() {
	defer c.lock.release()
	if c.host == nil {
		return // kubelet never started
	}
	if err := c.host.restore(c.Env.Dir); err != nil {
		c.t.Errorf("kubeenv: host clean-up: %v", err)
	}
}

// cleanStaleHost undoes what a kubelet of a test process that died left on
// the host (its env has been reaped by now, so its pod cgroups are empty).
func cleanStaleHost(t TB) error {
	stale, err := staleHostState()
	if err != nil {
		return err
	}
	if stale == nil {
		stale = &hostState{LogsDirExisted: true} // nothing recorded: only cgroups and dead links can be ours
	} else {
		t.Logf("kubeenv: restoring the host after a kubelet whose test process died (%s)", hostStatePath)
	}
	if dirs, _ := kubepodsCgroups(); len(dirs) > 0 {
		t.Logf("kubeenv: removing %d cgroups under /kubepods left by a kubelet that died", len(dirs))
	}
	if err := stale.restore(""); err != nil {
		return fmt.Errorf("cleaning up after a kubelet that died: %w", err)
	}
	return nil
}

// Leaks is the env's Leaks plus what kubelet leaves of pods: pod cgroups,
// pod dirs under the kubelet root, log links in /var/log/containers. The
// cluster's own processes are not leaks while it runs. kubelet removes a
// deleted pod's containers in its container GC, once a minute: use
// WaitNoLeaks.
func (c *Cluster) Leaks() []string {
	var leaks []string
	for _, l := range c.Env.Leaks() {
		// kubelet makes its root dir a shared mount of itself; the env's
		// teardown unmounts it.
		if strings.HasPrefix(l, "mount "+c.KubeletRoot+" ") {
			continue
		}
		leaks = append(leaks, l)
	}
	for _, d := range podCgroups() {
		leaks = append(leaks, "cgroup "+d)
	}
	podDirs, _ := filepath.Glob(filepath.Join(c.KubeletRoot, "pods", "*"))
	for _, d := range podDirs {
		leaks = append(leaks, "kubelet pod dir "+d)
	}
	for _, l := range containerLogLinks(c.Env.Dir) {
		leaks = append(leaks, "log link "+l)
	}
	return leaks
}

// WaitNoLeaks polls Leaks until it is empty or timeout passes, and returns
// the last result.
func (c *Cluster) WaitNoLeaks(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		leaks := c.Leaks()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type binaries struct {
	dir                               string
	kubelet, apiserver, kubectl, etcd string
}

// findBinaries finds what scripts/k8s-tools.sh builds, or skips the test
// naming what is missing (fails it when CI=true).
func findBinaries(t TB) binaries {
	t.Helper()
	dir := os.Getenv(K8sDirEnv)
	if dir == "" {
		root, err := e2eenv.RepoRoot()
		if err != nil {
			testutil.Unavailable(t, "kubeenv: %v; set %s", err, K8sDirEnv)
		}
		dir = filepath.Join(root, ".tools", "k8s")
	}
	b := binaries{dir: filepath.Join(dir, "bin")}
	var missing []string
	find := func(name string) string {
		p := filepath.Join(b.dir, name)
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, name)
		}
		return p
	}
	b.kubelet, b.apiserver, b.kubectl, b.etcd = find("kubelet"), find("kube-apiserver"), find("kubectl"), find("etcd")
	if len(missing) > 0 {
		testutil.Unavailable(t, "kubeenv: missing %s in %s (run `make k8s-tools`, or set %s)", strings.Join(missing, ", "), b.dir, K8sDirEnv)
	}
	return b
}
