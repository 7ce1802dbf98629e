//go:build linux

package kubeenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeletconfig "k8s.io/kubelet/config/v1beta1"
)

const (
	etcdStartTimeout      = time.Minute
	apiServerStartTimeout = 3 * time.Minute // a cold kube-apiserver on 2 busy cores
	kubeletReadyTimeout   = 3 * time.Minute
	// serviceCIDR is the API server's service range (nothing routes it: no kube-proxy).
	serviceCIDR = "10.96.0.0/24"
)

// writePKI writes the cluster's certificates under c.pkiDir: a CA, the API
// server's serving certificate, an admin client (system:masters), the
// kubelet's client (system:node:<node>) and serving certificates, the API
// server's client for kubelets, and the service-account keys.
func (c *Cluster) writePKI() error {
	ca, err := newCA()
	if err != nil {
		return err
	}
	c.CA = ca
	if err := os.MkdirAll(c.pkiDir, 0o700); err != nil {
		return err
	}
	c.caPath = filepath.Join(c.pkiDir, "ca.crt")
	if err := os.WriteFile(c.caPath, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", c.caPath, err)
	}
	issue := []struct {
		name, cn string
		orgs     []string
		hosts    []string
	}{
		{"apiserver", "kube-apiserver", nil, []string{"127.0.0.1", "localhost", "10.96.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}},
		{"admin", "cci-e2e-admin", []string{"system:masters"}, nil},
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"}, nil},
		{"kubelet-client", "system:node:" + c.NodeName, []string{"system:nodes"}, nil},
		{"kubelet", "system:node:" + c.NodeName, nil, []string{"127.0.0.1", c.NodeName}},
	}
	for _, i := range issue {
		kp, err := ca.Issue(i.cn, i.orgs, i.hosts...)
		if err != nil {
			return err
		}
		if _, _, err := kp.write(c.pkiDir, i.name); err != nil {
			return err
		}
		if i.name == "admin" {
			c.adminCert = kp
		}
	}
	c.saKey, c.saPub, err = serviceAccountKey(c.pkiDir)
	return err
}

func (c *Cluster) pki(name string) string { return filepath.Join(c.pkiDir, name) }

// writeKubeconfig writes a kubeconfig for the API server with the client
// certificate pki/<cert>.{crt,key}.
func (c *Cluster) writeKubeconfig(path, cert string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cci-e2e"] = &clientcmdapi.Cluster{Server: c.APIServerURL, CertificateAuthority: c.caPath}
	cfg.AuthInfos[cert] = &clientcmdapi.AuthInfo{ClientCertificate: c.pki(cert + ".crt"), ClientKey: c.pki(cert + ".key")}
	cfg.Contexts["cci-e2e"] = &clientcmdapi.Context{Cluster: "cci-e2e", AuthInfo: cert, Namespace: "default"}
	cfg.CurrentContext = "cci-e2e"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// startEtcd runs a one-member etcd on free loopback ports, data under dir.
func (c *Cluster) startEtcd() error {
	p, err := startWithPorts(2, func(ports []int) (*proc, error) {
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		p, err := c.startProc("etcd", c.bins.etcd,
			"--name=cci-e2e",
			"--data-dir="+filepath.Join(c.Dir, "etcd"),
			"--listen-client-urls="+client, "--advertise-client-urls="+client,
			"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
			"--initial-cluster=cci-e2e="+peer,
			"--unsafe-no-fsync", // test data: speed over durability on a shared disk
			"--log-level=warn",
		)
		if err != nil {
			return nil, err
		}
		c.etcdURL = client
		return p, p.waitReady(etcdStartTimeout, func() error { return etcdHealthy(client) })
	})
	c.etcd = p
	return err
}

func etcdHealthy(url string) error {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(b, &h); err != nil || h.Health != "true" {
		return fmt.Errorf("etcd /health: %s", b)
	}
	return nil
}

// startAPIServer runs kube-apiserver on a free loopback port against etcd,
// with client-certificate authentication, Node and RBAC authorization and
// its default admission plugins.
func (c *Cluster) startAPIServer() error {
	p, err := startWithPorts(1, func(ports []int) (*proc, error) {
		c.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(ports[0])
		p, err := c.startProc("kube-apiserver", c.bins.apiserver,
			"--etcd-servers="+c.etcdURL,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[0]),
			"--cert-dir="+c.pkiDir,
			"--tls-cert-file="+c.pki("apiserver.crt"), "--tls-private-key-file="+c.pki("apiserver.key"),
			"--client-ca-file="+c.caPath,
			"--authorization-mode=Node,RBAC",
			"--kubelet-client-certificate="+c.pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key="+c.pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority="+c.caPath,
			// The kubelet serves on loopback only, and kubelet refuses a
			// loopback node IP: the node is named localhost and reached by
			// that Hostname address.
			"--kubelet-preferred-address-types=Hostname",
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file="+c.saPub,
			"--service-account-signing-key-file="+c.saKey,
			"--service-cluster-ip-range="+serviceCIDR,
			// The endpoints of service "kubernetes" may not be loopback, and
			// nothing in a pod could reach them anyway (no kube-proxy).
			"--endpoint-reconciler-type=none",
			"--profiling=false",
			"--v=1",
		)
		if err != nil {
			return nil, err
		}
		if err := c.writeKubeconfig(c.Kubeconfig, "admin"); err != nil {
			return p, err
		}
		if err := c.newClient(); err != nil {
			return p, err
		}
		return p, p.waitReady(apiServerStartTimeout, c.apiServerReady)
	})
	c.apiserver = p
	return err
}

func (c *Cluster) apiServerReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("/readyz: %w: %s", err, b)
	}
	return nil
}

// kubeletConfig is the node's KubeletConfiguration: the facts known to work
// on a cgroup v1 host with swap (failCgroupV1, cgroupfs, failSwapOn), the
// API and health servers on loopback, x509 client authentication with the
// cluster CA (anonymous on too), the sysctl groups R9 allows, and
// thresholds that keep kubelet from evicting pods or deleting the test
// images on a shared disk.
func (c *Cluster) kubeletConfig(port, healthzPort int32) *kubeletconfig.KubeletConfiguration {
	f, t := false, true
	i32 := func(v int32) *int32 { return &v }
	cfg := &kubeletconfig.KubeletConfiguration{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Address:                      "127.0.0.1",
		Port:                         port,
		ReadOnlyPort:                 0,
		HealthzBindAddress:           "127.0.0.1",
		HealthzPort:                  &healthzPort,
		TLSCertFile:                  c.pki("kubelet.crt"),
		TLSPrivateKeyFile:            c.pki("kubelet.key"),
		StaticPodPath:                c.StaticPodDir,
		FileCheckFrequency:           metav1.Duration{Duration: time.Second},
		SyncFrequency:                metav1.Duration{Duration: 10 * time.Second},
		CgroupDriver:                 "cgroupfs",
		FailCgroupV1:                 &f,
		FailSwapOn:                   &f,
		ContainerRuntimeEndpoint:     "unix://" + c.Env.Address,
		ImageServiceEndpoint:         "unix://" + c.Env.Address,
		PodLogsDir:                   c.PodLogsDir,
		VolumePluginDir:              filepath.Join(c.Dir, "volume-plugins"),
		EnableControllerAttachDetach: &f, // no controller manager runs
		SerializeImagePulls:          &f,
		ImageGCHighThresholdPercent:  i32(100), // never delete the imported test images
		ImageGCLowThresholdPercent:   i32(99),
		EvictionHard: map[string]string{
			"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%",
		},
		MergeDefaultEvictionSettings: &f,
		// kubelet refuses every sysctl outside its small safe set unless
		// allowed here; the namespaced groups are what R9 allows (and more:
		// net.netfilter.*, which the shim must refuse itself).
		AllowedUnsafeSysctls: []string{"kernel.shm*", "kernel.msg*", "kernel.sem", "fs.mqueue.*", "net.*"},
		RegisterNode:         &t,
		Authentication: kubeletconfig.KubeletAuthentication{
			X509:      kubeletconfig.KubeletX509Authentication{ClientCAFile: c.caPath},
			Webhook:   kubeletconfig.KubeletWebhookAuthentication{Enabled: &f},
			Anonymous: kubeletconfig.KubeletAnonymousAuthentication{Enabled: &t},
		},
		Authorization: kubeletconfig.KubeletAuthorization{Mode: kubeletconfig.KubeletAuthorizationModeAlwaysAllow},
	}
	return cfg
}

// startKubelet runs kubelet against the env's containerd and the API server,
// registering NodeName labelled for the cci RuntimeClass, and waits until
// the node is Ready.
func (c *Cluster) startKubelet() error {
	for _, d := range []string{c.KubeletRoot, c.StaticPodDir, c.PodLogsDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	kubeconfig := filepath.Join(c.Dir, "kubelet.kubeconfig")
	if err := c.writeKubeconfig(kubeconfig, "kubelet-client"); err != nil {
		return err
	}
	began := time.Now()
	p, err := startWithPorts(2, func(ports []int) (*proc, error) {
		c.KubeletPort = ports[0]
		cfg := c.kubeletConfig(int32(ports[0]), int32(ports[1]))
		b, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encoding kubelet config: %w", err)
		}
		cfgPath := filepath.Join(c.Dir, "kubelet.json")
		if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
			return nil, fmt.Errorf("writing kubelet config: %w", err)
		}
		p, err := c.startProc("kubelet", c.bins.kubelet,
			"--config="+cfgPath,
			"--kubeconfig="+kubeconfig,
			"--root-dir="+c.KubeletRoot,
			"--cert-dir="+filepath.Join(c.Dir, "kubelet-pki"),
			"--hostname-override="+c.NodeName,
			"--node-labels="+NodeLabel+"=true",
			"--v=2",
		)
		if err != nil {
			return nil, err
		}
		c.kubelet = p
		return p, p.waitReady(kubeletReadyTimeout, c.nodeReady)
	})
	c.kubelet = p
	c.KubeletStartToReady = time.Since(began)
	return err
}

// startProc starts a component in c.Dir with its log at c.Dir/<name>.log,
// kept out of the env's leaks while it runs.
func (c *Cluster) startProc(name, bin string, args ...string) (*proc, error) {
	p, err := startProc(name, c.Dir, filepath.Join(c.Dir, name+".log"), c.baseEnv(), bin, args...)
	if err != nil {
		return nil, err
	}
	p.forget = c.Env.KeepProcess(p.pid())
	return p, nil
}

// baseEnv is the environment of every component: no proxy settings of the
// test's environment leak in; PATH has the host tools kubelet runs (mount,
// umount, ...).
func (c *Cluster) baseEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + c.Dir,
		"TMPDIR=" + c.Dir,
	}
}
