package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
	"github.com/cci-shim/cci-shim/tests/kubeenv"
)

// kubeCCIWebhook runs the real cci-webhook behind the real API server,
// registered from the packaged packaging/webhook/webhook-configurations.yaml
// (its CEL match condition included; pointed at the test's webhook and
// limited to one namespace so that it judges no other test's pods):
//   - R4 per volume name with nothing but the pod spec and the replacement
//     annotation: the webhook writes coordinator.cci.io/hostpath-volumes, the
//     shim matches the named entries through it;
//   - R26: an image name the node has only under another prefix runs from
//     the replaced name;
//   - refusals at `kubectl apply` time, with the shim's messages: a bad
//     annotation, and a hostPath volume no entry covers.
func kubeCCIWebhook(t *testing.T, c *kubeenv.Cluster) {
	const ns = "ccihook"
	w := startWebhook(t)
	root, err := repoRootDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx := kctx(t, 3*time.Minute)
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	remove, err := c.RegisterWebhookManifests(ctx, filepath.Join(root, "packaging", "webhook", "webhook-configurations.yaml"),
		w.URL, w.caBundle(), &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)

	// The API server picks the configurations up asynchronously: dry-run a
	// pod the validating webhook refuses until it does.
	probe := kubePod(ns, "probe", kubeenv.RuntimeClassCCI, sleepForever)
	probe.Annotations["coordinator.cci.io/hostpath-replacement"] = `[{"name":"x","policyType":"bogus"}]`
	probe.Spec.NodeName = c.NodeName
	var refusal error
	if !waitFor(30*time.Second, func() bool {
		_, refusal = c.Client.CoreV1().Pods(ns).Create(ctx, probe.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return refusal != nil && strings.Contains(refusal.Error(), "denied the request")
	}) {
		t.Fatalf("the API server never called cci-webhook: last dry run: %v\n%s", refusal, w.log())
	}

	t.Run("bad annotation refused at apply", func(t *testing.T) {
		manifest := `apiVersion: v1
kind: Pod
metadata:
  name: bad-annotation
  namespace: ` + ns + `
  annotations:
    coordinator.cci.io/hostpath-replacement: '[{"name":"x","policyType":"bogus"}]'
spec:
  runtimeClassName: cci
  nodeName: ` + c.NodeName + `
  containers:
  - name: app
    image: ` + e2eenv.ImageName + `
`
		_, errOut, err := c.KubectlStdin(kctx(t, time.Minute), []byte(manifest), "apply", "-f", "-")
		if err == nil || !strings.Contains(errOut, `unknown policyType \"bogus\"`) && !strings.Contains(errOut, `unknown policyType "bogus"`) {
			t.Errorf("kubectl apply: %v: %s; want a refusal naming the unknown policyType", err, errOut)
		}
		t.Logf("kubectl apply: %s", strings.TrimSpace(errOut))
	})

	t.Run("uncovered hostPath refused at create", func(t *testing.T) {
		pod := kubePod(ns, "uncovered", kubeenv.RuntimeClassCCI, sleepForever)
		kubeAddHostPath(pod, "host-etc", "/etc", "/host")
		pod.Spec.NodeName = c.NodeName
		_, err := c.Client.CoreV1().Pods(ns).Create(kctx(t, time.Minute), pod, metav1.CreateOptions{})
		const want = `hostPath volume "/etc" is not allowed`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("create: %v; want a refusal containing %q", err, want)
			cleanupPod(c, pod)
		}
	})

	t.Run("R4 per volume name from the webhook's map", func(t *testing.T) {
		pod := kubeLimits(kubePod(ns, "hostpath-names", kubeenv.RuntimeClassCCI, sleepForever), "500m", "2Gi")
		pod.Annotations["coordinator.cci.io/hostpath-replacement"] = `[` +
			`{"name":"config","policyType":"replaceByEmptyDir","emptyDir":{"medium":"Memory","sizeLimit":"32Mi"}},` +
			`{"name":"docs","policyType":"remove"}]`
		kubeAddHostPath(pod, "config", "/etc", "/config")
		kubeAddHostPath(pod, "docs", "/usr/share", "/docs")
		p := kubeRunPod(t, c, pod)
		if got, want := p.Annotations["coordinator.cci.io/hostpath-volumes"], `{"config":"/etc","docs":"/usr/share"}`; got != want {
			t.Errorf("hostpath-volumes written by the webhook = %q, want %q", got, want)
		}
		out := kubectlExec(t, c, ns, pod.Name, "ls -A /config | wc -l; df -k /config | tail -1 | awk '{print $2}'; if [ -e /docs ] && [ -n \"$(ls -A /docs)\" ]; then echo docs-mounted; else echo docs-removed; fi")
		if got, want := strings.Fields(out), []string{"0", "32768", "docs-removed"}; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("config (replaced by a 32Mi Memory emptyDir) files, KiB; docs (removed) = %q, want %q", got, want)
		}
		kubeDeletePod(t, c, ns, pod.Name)
	})

	t.Run("R26 image replaced before kubelet pulls", func(t *testing.T) {
		pod := kubePod(ns, "replaced-image", kubeenv.RuntimeClassCCI, "echo from-replaced-image; "+sleepForever)
		pod.Spec.Containers[0].Image = "mirror.example/cci/busybox:test"
		pod.Annotations["coordinator.cci.io/image-replacement"] = `[{"repositoryPrefix":"mirror.example/cci","replaceWith":"localhost/cci"}]`
		p := kubeRunPod(t, c, pod)
		if got := p.Spec.Containers[0].Image; got != e2eenv.ImageName {
			t.Errorf("image after admission = %q, want %q", got, e2eenv.ImageName)
		}
		kubeDeletePod(t, c, ns, pod.Name)
	})
}
