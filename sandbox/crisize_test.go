package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// kubeletPod builds the sandbox and container specs kubelet v1.37 and
// containerd 2.4 produce for a pod: the sandbox carries the pod aggregate
// (PodLimits/PodRequests), each container its own limits.
type kubeletContainer struct {
	name                   string
	init, sidecar          bool
	reqCPU, limCPU, limMem int64 // millicores, bytes; 0 = not set
}

func sandboxFor(cs []kubeletContainer, annotation string) *specs.Spec {
	var apps, sidecars, inits, rapps, rsidecars, rinits, mapps, msidecars, minits int64
	for _, c := range cs {
		req := c.reqCPU
		if req == 0 {
			req = c.limCPU
		}
		switch {
		case c.init && c.sidecar:
			inits, rinits, minits = max(inits, sidecars+c.limCPU), max(rinits, rsidecars+req), max(minits, msidecars+c.limMem)
			sidecars, rsidecars, msidecars = sidecars+c.limCPU, rsidecars+req, msidecars+c.limMem
		case c.init:
			inits, rinits, minits = max(inits, sidecars+c.limCPU), max(rinits, rsidecars+req), max(minits, msidecars+c.limMem)
		default:
			apps, rapps, mapps = apps+c.limCPU, rapps+req, mapps+c.limMem
		}
	}
	s := criSandbox()
	s.Annotations[AnnotationSandboxCPUQuota] = fmt.Sprint(quotaOf(max(apps+sidecars, inits), defaultPeriod))
	s.Annotations[AnnotationSandboxCPUShares] = fmt.Sprint(sharesOf(max(rapps+rsidecars, rinits)))
	s.Annotations[AnnotationSandboxMemory] = fmt.Sprint(max(mapps+msidecars, minits))
	if annotation != "" {
		s.Annotations[AnnotationContainers] = annotation
	}
	return s
}

func containerFor(c kubeletContainer) *specs.Spec {
	s := criContainer()
	s.Annotations[AnnotationContainerName] = c.name
	req := c.reqCPU
	if req == 0 {
		req = c.limCPU
	}
	s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: u64(sharesOf(req))}
	if c.limCPU > 0 {
		s.Linux.Resources.CPU.Quota, s.Linux.Resources.CPU.Period = i64(quotaOf(c.limCPU, defaultPeriod)), u64(defaultPeriod)
	}
	s.Linux.Resources.Memory = nil
	if c.limMem > 0 {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: i64(c.limMem)}
	}
	return s
}

func limitsOf(s *specs.Spec) Resources {
	r := s.Linux.Resources
	return Resources{MilliCPU: *r.CPU.Quota / 100, Memory: *r.Memory.Limit}
}

func TestR5FromCRI(t *testing.T) {
	const app = `{"name":"app","limits":{"cpu":"300m","memory":"1Gi"}}`
	for _, tc := range []struct {
		name       string
		containers []kubeletContainer
		annotation string
		pod        Resources
		want       map[string]Resources // container limits, in creation order
		exits      []string             // containers that exit after creation (init containers)
		wantErr    string
	}{
		{name: "the issue's example: 300m/700Mi runs at 0.5 core, 1 GiB",
			containers: []kubeletContainer{{name: "app", limCPU: 300, limMem: 700 * MiB}},
			pod:        Resources{500, GiB}, want: map[string]Resources{"app": {500, GiB}}},
		{name: "two containers, no description: each rounded, the first takes the increment",
			containers: []kubeletContainer{{name: "a", limCPU: 1000, limMem: GiB}, {name: "b", limCPU: 300, limMem: 300 * MiB}},
			pod:        Resources{1500, 3 * GiB},
			want:       map[string]Resources{"a": {1000, 3*GiB - 300*MiB}, "b": {500, 300 * MiB}}},
		{name: "init container first: it holds the increment until it exits",
			containers: []kubeletContainer{{name: "init", init: true, limCPU: 100, limMem: 128 * MiB}, {name: "app", limCPU: 300, limMem: 700 * MiB}},
			pod:        Resources{500, GiB}, exits: []string{"init"},
			want: map[string]Resources{"init": {250, minMemory + GiB - 700*MiB}, "app": {500, GiB}}},
		{name: "BestEffort pod: the node default, and every container gets it",
			containers: []kubeletContainer{{name: "app"}},
			pod:        Resources{1000, 2 * GiB}, want: map[string]Resources{"app": {1000, 2 * GiB}}},
		{name: "requests only: CPU request from shares, memory from the pod",
			containers: []kubeletContainer{{name: "app", reqCPU: 300}},
			pod:        Resources{500, GiB}, want: map[string]Resources{"app": {500, GiB}}},
		{name: "a container without limits beside one with: it gets the pod size",
			containers: []kubeletContainer{{name: "app", limCPU: 300, limMem: 700 * MiB}, {name: "be"}},
			pod:        Resources{500, GiB}, want: map[string]Resources{"app": {500, GiB}, "be": {500, GiB}}},
		{name: "over 32 cores: refused with the R5 message",
			containers: []kubeletContainer{{name: "app", limCPU: 40000, limMem: 80 * GiB}},
			wantErr:    `pod CPU "40 cores" is not allowed (pod is over 32 cores or 256 GiB, so it is not normalised); allowed: 0.25 to 32 cores, or exactly 48 or 64 cores`},
		{name: "described and verified: R5 exactly, increment on the first app container",
			containers: []kubeletContainer{{name: "app", limCPU: 300, limMem: GiB}, {name: "sidecar", reqCPU: 250}},
			annotation: `[` + app + `,{"name":"sidecar","requests":{"cpu":"250m","memory":"512Mi"}}]`,
			pod:        Resources{750, 2 * GiB},
			want:       map[string]Resources{"app": {500, 2*GiB - minMemory}, "sidecar": {250, minMemory}}},
		{name: "described with init and a restartable sidecar (kubelet's aggregate)",
			containers: []kubeletContainer{{name: "init", init: true, limCPU: 2000, limMem: 2 * GiB},
				{name: "proxy", init: true, sidecar: true, limCPU: 500, limMem: 512 * MiB}, {name: "app", limCPU: 1000, limMem: 2 * GiB}},
			annotation: `[{"name":"init","init":true,"limits":{"cpu":"2","memory":"2Gi"}},{"name":"proxy","init":true,"sidecar":true,"limits":{"cpu":"500m","memory":"512Mi"}},` +
				`{"name":"app","limits":{"cpu":"1","memory":"2Gi"}}]`,
			pod:  Resources{2000, 4 * GiB},
			want: map[string]Resources{"init": {2000, 2 * GiB}, "proxy": {500, 512 * MiB}, "app": {1500, 4*GiB - 512*MiB}}},
		{name: "described pod that does not add up to CRI's",
			containers: []kubeletContainer{{name: "app", limCPU: 300, limMem: 700 * MiB}},
			annotation: `[` + app + `]`,
			wantErr:    `annotation resources.cci.io/containers "pod memory limit 1 GiB" is not allowed (the pod memory limit is 700 MiB as CRI set it)`},
		{name: "phantom container raising the CPU request",
			containers: []kubeletContainer{{name: "app", limCPU: 300, limMem: GiB}},
			annotation: `[` + app + `,{"name":"ghost","requests":{"cpu":"30"}}]`,
			wantErr:    `"pod CPU request 30.3 cores" is not allowed (the pod CPU request is 0.3 cores as CRI set it)`},
		{name: "phantom container with only a memory request: ignored, CRI cannot see it",
			containers: []kubeletContainer{{name: "app", limCPU: 300, limMem: 700 * MiB}},
			annotation: `[{"name":"app","limits":{"cpu":"300m","memory":"700Mi"}},{"name":"ghost","requests":{"memory":"200Gi"}}]`,
			pod:        Resources{500, GiB}, want: map[string]Resources{"app": {500, GiB}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig("k8s.io")
			sb := sandboxFor(tc.containers, tc.annotation)
			plan, err := applySpec(sb, tSandboxID, cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v\nwant %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.PodSize.Pod != tc.pod {
				t.Fatalf("pod %+v, want %+v (%s)", plan.PodSize.Pod, tc.pod, plan.State.SizeSource)
			}
			st := plan.State
			st.RecordNamespaces("", []NSRef{podNet, podIPC, podUTS, podPID})
			for i, c := range tc.containers {
				cfg.Pod = st
				s := containerFor(c)
				id := fmt.Sprintf("%064x", i+1)
				cp, err := applySpec(s, id, cfg)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				if cp.State != nil {
					st = cp.State
				}
				if got := limitsOf(s); got != tc.want[c.name] {
					t.Errorf("%s: limits %+v, want %+v", c.name, got, tc.want[c.name])
				}
				for _, e := range tc.exits {
					if e == c.name {
						st.ForgetContainer(id)
					}
				}
			}
		})
	}
}

// TestR5DescribedContainerMismatch: the breakdown is checked container by
// container against CRI, whichever way it is off.
func TestR5DescribedContainerMismatch(t *testing.T) {
	cfg := baseConfig("k8s.io")
	cs := []kubeletContainer{{name: "a", limCPU: 500, limMem: GiB}, {name: "b", limCPU: 500, limMem: GiB}}
	sb := sandboxFor(cs, `[{"name":"a","limits":{"cpu":"900m","memory":"1Gi"}},{"name":"b","limits":{"cpu":"100m","memory":"1Gi"}}]`)
	plan, err := applySpec(sb, tSandboxID, cfg)
	if err != nil {
		t.Fatalf("aggregates match, the sandbox passes: %v", err)
	}
	plan.State.RecordNamespaces("", []NSRef{podNet, podIPC, podUTS, podPID})
	cfg.Pod = plan.State
	_, err = applySpec(containerFor(cs[0]), tContainerID, cfg)
	if err == nil || !strings.Contains(err.Error(), `"CPU limit 0.9 cores" is not allowed (container "a"'s CPU limit is 0.5 cores as CRI set it)`) {
		t.Fatalf("err = %v", err)
	}
}

func TestR5StateRoundTrip(t *testing.T) {
	cfg := baseConfig("k8s.io")
	st := sandboxState(t, cfg)
	st.IncrementHolder = tContainerID
	st.RecordNamespaces(tContainerID, []NSRef{{Type: "pid", Dev: 4, Ino: 99}})
	data, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalPodState(data)
	if err != nil {
		t.Fatal(err)
	}
	if back.IncrementHolder != tContainerID || len(back.Namespaces) != 5 || back.Size.Pod != st.Size.Pod || back.CgroupParent != st.CgroupParent {
		t.Fatalf("round trip: %+v", back)
	}
	if !back.ForgetContainer(tContainerID) || back.IncrementHolder != "" || len(back.Namespaces) != 4 {
		t.Fatalf("forget: %+v", back)
	}
	dir := filepath.Join(t.TempDir(), "k8s.io", tSandboxID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, PodStateFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := LoadPodStates(filepath.Dir(filepath.Dir(dir))); len(got) != 1 || got[0].Identity != st.Identity {
		t.Fatalf("LoadPodStates: %+v", got)
	}
	if _, err := UnmarshalPodState([]byte(`{"version":99}`)); err == nil {
		t.Fatal("unknown version accepted")
	}
	if _, err := UnmarshalPodState([]byte(`{"version":1,"extra":1}`)); err == nil {
		t.Fatal("unknown field accepted")
	}
}
