//go:build linux

package kubeenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/yaml"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// nodeReady is nil once the node is registered and its Ready condition True.
func (c *Cluster) nodeReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("node %s: %w", c.NodeName, err)
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s: Ready %s: %s", c.NodeName, cond.Status, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", c.NodeName)
}

// applyRuntimeClass creates the RuntimeClass of packaging/kubernetes/runtimeclass.yaml.
func (c *Cluster) applyRuntimeClass(ctx context.Context) error {
	root, err := e2eenv.RepoRoot()
	if err != nil {
		return err
	}
	path := filepath.Join(root, "packaging", "kubernetes", "runtimeclass.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the packaged RuntimeClass: %w", err)
	}
	var rc nodev1.RuntimeClass
	if err := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096).Decode(&rc); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	if rc.Name != RuntimeClassCCI {
		return fmt.Errorf("%s: RuntimeClass %q, want %q", path, rc.Name, RuntimeClassCCI)
	}
	if _, err := c.Client.NodeV1().RuntimeClasses().Create(ctx, &rc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating RuntimeClass from %s: %w", path, err)
	}
	return nil
}

// EnsureNamespace creates namespace ns if needed, with what the controller
// manager (which does not run) would add: the default service account and
// the kube-root-ca.crt config map that service-account token volumes use.
func (c *Cluster) EnsureNamespace(ctx context.Context, ns string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", ns, err)
	}
	_, err = c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/default: %w", ns, err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": string(c.CA.CertPEM)}}
	_, err = c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating config map %s/kube-root-ca.crt: %w", ns, err)
	}
	return nil
}

// CreatePod binds pod to the node (there is no scheduler) and creates it.
// Its namespace is prepared with EnsureNamespace.
func (c *Cluster) CreatePod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	if err := c.EnsureNamespace(ctx, pod.Namespace); err != nil {
		return nil, err
	}
	pod.Spec.NodeName = c.NodeName
	created, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return created, nil
}

// WaitPod polls pod ns/name until cond returns true or an error, or ctx
// ends; it returns the pod last seen.
func (c *Cluster) WaitPod(ctx context.Context, ns, name string, cond func(*corev1.Pod) (bool, error)) (*corev1.Pod, error) {
	var last *corev1.Pod
	var lastErr error
	for {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			ok, err := cond(p)
			if err != nil {
				return p, err
			}
			if ok {
				return p, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return last, fmt.Errorf("pod %s/%s: phase %s, %s: %w", ns, name, last.Status.Phase, describeStatuses(last), ctx.Err())
			}
			return nil, fmt.Errorf("pod %s/%s: %w (last: %v)", ns, name, ctx.Err(), lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Running is a WaitPod condition: every container runs. A pod that has
// failed or whose container terminated is an error.
func Running(p *corev1.Pod) (bool, error) {
	switch p.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		return false, fmt.Errorf("pod %s/%s is %s: %s", p.Namespace, p.Name, p.Status.Phase, describeStatuses(p))
	case corev1.PodRunning:
	default:
		return false, nil
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Running == nil {
			return false, nil
		}
	}
	return len(p.Status.ContainerStatuses) == len(p.Spec.Containers), nil
}

func describeStatuses(p *corev1.Pod) string {
	var parts []string
	for _, s := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case s.State.Running != nil:
			parts = append(parts, s.Name+" running")
		case s.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting (%s: %s)", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message))
		case s.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated (exit %d, %s: %s)", s.Name, s.State.Terminated.ExitCode, s.State.Terminated.Reason, s.State.Terminated.Message))
		}
	}
	if len(parts) == 0 {
		return "no container status; " + p.Status.Reason + " " + p.Status.Message
	}
	return strings.Join(parts, ", ")
}

// RunPod is CreatePod, then WaitPod until Running. A pod that the runtime
// refuses for good (a sandbox refused as an invalid argument, a container
// that cannot be created) is an error at once, not after kubelet's retries.
func (c *Cluster) RunPod(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	created, err := c.CreatePod(ctx, pod)
	if err != nil {
		return nil, err
	}
	var checked time.Time
	p, err := c.WaitPod(ctx, created.Namespace, created.Name, func(p *corev1.Pod) (bool, error) {
		if ok, err := Running(p); ok || err != nil {
			return ok, err
		}
		for _, s := range p.Status.ContainerStatuses {
			if w := s.State.Waiting; w != nil && refusedReasons[w.Reason] {
				return false, fmt.Errorf("container %s: %s: %s", s.Name, w.Reason, w.Message)
			}
		}
		if time.Since(checked) < time.Second {
			return false, nil
		}
		checked = time.Now()
		evs, _ := c.Events(ctx, p.Namespace, p.Name)
		for _, e := range evs {
			if e.Reason == "FailedCreatePodSandBox" && strings.Contains(e.Message, "code = InvalidArgument") {
				return false, fmt.Errorf("sandbox refused: %s", e.Message)
			}
		}
		return false, nil
	})
	if err != nil {
		return p, fmt.Errorf("%w\nevents: %s", err, c.EventSummary(context.WithoutCancel(ctx), created.Namespace, created.Name))
	}
	return p, nil
}

// refusedReasons are container waiting reasons that kubelet's retries do
// not cure.
var refusedReasons = map[string]bool{
	"CreateContainerError": true, "CreateContainerConfigError": true, "ErrImageNeverPull": true, "InvalidImageName": true,
}

// DeletePod deletes ns/name with the given grace period and waits until
// the API server no longer has it (kubelet confirms the containers stopped).
func (c *Cluster) DeletePod(ctx context.Context, ns, name string, graceSeconds int64) error {
	if err := c.deletePod(ctx, ns, name, graceSeconds); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	for {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s still exists after delete: %w", ns, name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *Cluster) deletePod(ctx context.Context, ns, name string, graceSeconds int64) error {
	return c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &graceSeconds})
}

// nodePods lists the pods bound to the node, in every namespace.
func (c *Cluster) nodePods(ctx context.Context) ([]corev1.Pod, error) {
	l, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", c.NodeName).String()})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return l.Items, nil
}

// Events returns the events about object ns/name, oldest first.
func (c *Cluster) Events(ctx context.Context, ns, name string) ([]corev1.Event, error) {
	l, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String()})
	if err != nil {
		return nil, fmt.Errorf("listing events of %s/%s: %w", ns, name, err)
	}
	sort.SliceStable(l.Items, func(i, j int) bool { return eventTime(l.Items[i]).Before(eventTime(l.Items[j])) })
	return l.Items, nil
}

func eventTime(e corev1.Event) time.Time {
	if !e.LastTimestamp.IsZero() {
		return e.LastTimestamp.Time
	}
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// EventSummary is Events as "Reason: message" lines, for failure messages.
func (c *Cluster) EventSummary(ctx context.Context, ns, name string) string {
	evs, err := c.Events(ctx, ns, name)
	if err != nil {
		return err.Error()
	}
	var lines []string
	for _, e := range evs {
		lines = append(lines, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
	}
	return strings.Join(lines, "\n")
}

// WaitEvent waits until an event about ns/name has reason and a message
// containing substr, and returns it.
func (c *Cluster) WaitEvent(ctx context.Context, ns, name, reason, substr string) (corev1.Event, error) {
	for {
		evs, err := c.Events(ctx, ns, name)
		if err == nil {
			for _, e := range evs {
				if e.Reason == reason && strings.Contains(e.Message, substr) {
					return e, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return corev1.Event{}, fmt.Errorf("no %s event containing %q about %s/%s: %w; events:\n%s",
				reason, substr, ns, name, ctx.Err(), c.EventSummary(context.WithoutCancel(ctx), ns, name))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// SandboxID returns the CRI id of the pod's ready sandbox (what the shim
// knows the pod by).
func (c *Cluster) SandboxID(ctx context.Context, pod *corev1.Pod) (string, error) {
	rs, _ := c.Env.CRI()
	l, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(pod.UID)},
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
	}})
	if err != nil {
		return "", fmt.Errorf("listing sandboxes of %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if len(l.Items) != 1 {
		return "", fmt.Errorf("pod %s/%s (uid %s) has %d ready sandboxes, want 1", pod.Namespace, pod.Name, pod.UID, len(l.Items))
	}
	return l.Items[0].Id, nil
}

// PodLogs returns a container's log through the API server (client-go;
// the same path as kubectl logs).
func (c *Cluster) PodLogs(ctx context.Context, ns, pod, container string) (string, error) {
	b, err := c.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s: %w", ns, pod, err)
	}
	return string(b), nil
}

// Kubectl runs the kubectl binary with the admin kubeconfig.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	return c.KubectlStdin(ctx, nil, args...)
}

// KubectlStdin is Kubectl with stdin.
func (c *Cluster) KubectlStdin(ctx context.Context, stdin []byte, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, c.bins.kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	cmd.Dir = c.Dir
	cmd.Env = append(c.baseEnv(), "KUBECONFIG="+c.Kubeconfig)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), err
}

// AddStaticPod writes pod as a manifest into StaticPodDir and returns the
// name of its mirror pod in the API server (<name>-<node>). kubelet picks
// it up within a second (fileCheckFrequency).
func (c *Cluster) AddStaticPod(pod *corev1.Pod) (mirror string, err error) {
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	b, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding static pod %s: %w", pod.Name, err)
	}
	path := c.staticPodPath(pod.Name)
	tmp := filepath.Join(filepath.Dir(c.StaticPodDir), ".static-"+pod.Name+".json")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return "", fmt.Errorf("writing static pod %s: %w", pod.Name, err)
	}
	// Renamed into place, so kubelet never reads half a manifest.
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("writing static pod %s: %w", pod.Name, err)
	}
	return pod.Name + "-" + c.NodeName, nil
}

// RemoveStaticPod removes the manifest AddStaticPod wrote; kubelet then
// stops the pod and deletes its mirror.
func (c *Cluster) RemoveStaticPod(name string) error {
	if err := os.Remove(c.staticPodPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing static pod %s: %w", name, err)
	}
	return nil
}

func (c *Cluster) staticPodPath(name string) string {
	return filepath.Join(c.StaticPodDir, name+".json")
}
