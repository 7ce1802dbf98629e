// Package crictl drives pods through crictl, the CRI client operators use
// (cri-tools, installed by scripts/deps.sh), so that the demo and the
// end-to-end tests exercise the cci runtime the way a person at a node does,
// beside the Go CRI client. It only writes crictl's JSON inputs and runs it;
// it is not a CRI client of its own.
package crictl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Client runs crictl against one containerd.
type Client struct {
	Path     string // the crictl binary
	Endpoint string // containerd's socket path
	Dir      string // where its config and JSON inputs are written
	Timeout  time.Duration
}

// Find returns crictl from dirs (the tools dir first), else from PATH.
func Find(dirs ...string) (string, error) {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "crictl")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath("crictl")
	if err != nil {
		return "", fmt.Errorf("crictl not found in %v or PATH (scripts/deps.sh installs it): %w", dirs, err)
	}
	return p, nil
}

// New returns a client writing its config into dir.
func New(path, endpoint, dir string) (*Client, error) {
	c := &Client{Path: path, Endpoint: endpoint, Dir: dir, Timeout: 2 * time.Minute}
	cfg := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\npull-image-on-create: false\n", endpoint, endpoint)
	if err := os.WriteFile(c.config(), []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("writing crictl config: %w", err)
	}
	return c, nil
}

func (c *Client) config() string { return filepath.Join(c.Dir, "crictl.yaml") }

// Run runs crictl with args and returns its trimmed stdout; an error carries
// its stderr.
func (c *Client) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Path, append([]string{"--config", c.config()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("crictl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// WriteJSON writes v as name in the client's dir and returns the path.
func (c *Client) WriteJSON(name string, v any) (string, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	p := filepath.Join(c.Dir, name)
	return p, os.WriteFile(p, data, 0o644)
}

// Pod is crictl's pod config (a CRI PodSandboxConfig in JSON).
type Pod struct {
	Metadata     Metadata          `json:"metadata"`
	LogDirectory string            `json:"log_directory,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Linux        *PodLinux         `json:"linux,omitempty"`
}

// Metadata names a pod or a container.
type Metadata struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	UID       string `json:"uid,omitempty"`
	Attempt   uint32 `json:"attempt,omitempty"`
}

// PodLinux holds the pod's sysctls and its pod-level resources (kubelet
// sends the sum of its containers' limits).
type PodLinux struct {
	Sysctls   map[string]string `json:"sysctls,omitempty"`
	Resources *Resources        `json:"resources,omitempty"`
}

// Resources are CRI's LinuxContainerResources: CFS quota and period in
// microseconds, memory in bytes.
type Resources struct {
	CPUPeriod          int64 `json:"cpu_period,omitempty"`
	CPUQuota           int64 `json:"cpu_quota,omitempty"`
	MemoryLimitInBytes int64 `json:"memory_limit_in_bytes,omitempty"`
}

// ContainerLinux holds a container's resources.
type ContainerLinux struct {
	Resources *Resources `json:"resources,omitempty"`
}

// Container is crictl's container config (a CRI ContainerConfig in JSON).
type Container struct {
	Metadata    Metadata          `json:"metadata"`
	Image       Image             `json:"image"`
	Command     []string          `json:"command,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	LogPath     string            `json:"log_path,omitempty"`
	Linux       *ContainerLinux   `json:"linux,omitempty"`
}

// Image names a container's image.
type Image struct {
	Image string `json:"image"`
}

// RunPod starts a pod with the RuntimeClass handler and returns its ID.
func (c *Client) RunPod(pod Pod, handler string) (string, error) {
	p, err := c.WriteJSON("pod-"+pod.Metadata.Name+".json", pod)
	if err != nil {
		return "", err
	}
	return c.Run("runp", "--runtime", handler, p)
}

// StartContainer creates and starts a container in a pod and returns its ID.
func (c *Client) StartContainer(podID string, pod Pod, ctr Container) (string, error) {
	pp, err := c.WriteJSON("pod-"+pod.Metadata.Name+".json", pod)
	if err != nil {
		return "", err
	}
	cp, err := c.WriteJSON("ctr-"+pod.Metadata.Name+"-"+ctr.Metadata.Name+".json", ctr)
	if err != nil {
		return "", err
	}
	id, err := c.Run("create", "--no-pull", podID, cp, pp)
	if err != nil {
		return "", err
	}
	if _, err := c.Run("start", id); err != nil {
		return id, err
	}
	return id, nil
}

// RemovePod stops and removes a pod with its containers.
func (c *Client) RemovePod(podID string) error {
	if _, err := c.Run("stopp", podID); err != nil {
		return err
	}
	_, err := c.Run("rmp", podID)
	return err
}
