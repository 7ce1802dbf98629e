package sandbox

import (
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseHostPathReplacement(t *testing.T) {
	for _, tc := range []struct {
		v       string
		want    []Replacement
		wantErr string
	}{
		{v: `[]`, want: []Replacement{}},
		{v: `[{"name":"*","policyType":"remove"}]`, want: []Replacement{{Name: "*", Policy: PolicyRemove}}},
		{v: `[{"name":"data","policyType":"replaceByLocalDir","localDir":{"sizeLimit":"1Gi"}}]`,
			want: []Replacement{{Name: "data", Policy: PolicyReplaceByLocalDir, SizeLimit: GiB}}},
		{v: `[{"name":"m","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"10Gi","medium":"Memory"}}]`,
			want: []Replacement{{Name: "m", Policy: PolicyReplaceByEmptyDir, SizeLimit: 10 * GiB, Memory: true}}},
		{v: `[{"name":"e","policyType":"replaceByEmptyDir"}]`, want: []Replacement{{Name: "e", Policy: PolicyReplaceByEmptyDir}}},
		{v: `{`, wantErr: "unexpected EOF"},
		{v: `[{"name":"a","policyType":"delete"}]`, wantErr: `unknown policyType "delete"`},
		{v: `[{"name":"a","policyType":"remove","extra":1}]`, wantErr: `unknown field "extra"`},
		{v: `[{"name":"","policyType":"remove"}]`, wantErr: "empty or repeated"},
		{v: `[{"name":"a","policyType":"remove"},{"name":"a","policyType":"remove"}]`, wantErr: "empty or repeated"},
		{v: `[{"name":"a","policyType":"replaceByEmptyDir","emptyDir":{"medium":"HugePages"}}]`, wantErr: `medium "HugePages"`},
		{v: `[{"name":"a","policyType":"replaceByLocalDir","localDir":{"sizeLimit":"lots"}}]`, wantErr: `sizeLimit "lots"`},
		{v: `[{"name":"a","policyType":"replaceByLocalDir","localDir":{"sizeLimit":"0"}}]`, wantErr: `sizeLimit "0"`},
		{v: `[] []`, wantErr: "trailing data"},
	} {
		got, err := ParseHostPathReplacement(tc.v)
		if tc.wantErr != "" {
			var pe *PolicyError
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &pe) ||
				!strings.Contains(err.Error(), AnnotationHostPathReplacement) {
				t.Errorf("%s: err = %v, want PolicyError with %q", tc.v, err, tc.wantErr)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%s: got %+v, %v", tc.v, got, err)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: entry %d = %+v, want %+v", tc.v, i, got[i], tc.want[i])
			}
		}
	}
}

func FuzzParseHostPathReplacement(f *testing.F) {
	f.Add(`[{"name":"*","policyType":"remove"}]`)
	f.Add(`[{"name":"m","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"10Gi","medium":"Memory"}}]`)
	f.Fuzz(func(t *testing.T, v string) {
		got, err := ParseHostPathReplacement(v)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range got {
			if r.Name == "" || seen[r.Name] || r.SizeLimit < 0 {
				t.Fatalf("bad entry accepted: %+v", r)
			}
			seen[r.Name] = true
			switch r.Policy {
			case PolicyRemove, PolicyReplaceByLocalDir, PolicyReplaceByEmptyDir:
			default:
				t.Fatalf("unknown policy accepted: %q", r.Policy)
			}
			if r.Memory && r.Policy != PolicyReplaceByEmptyDir {
				t.Fatalf("memory medium on %q", r.Policy)
			}
		}
	})
}

func bind(src, dst string, opts ...string) specs.Mount {
	return specs.Mount{Source: src, Destination: dst, Type: "bind", Options: append([]string{"rbind"}, opts...)}
}

func TestRewriteHostPaths(t *testing.T) {
	cfg := (&Config{PodDir: "/run/cci/sb1"}).withDefaults()
	kube := "/var/lib/kubelet/pods/uid-1/"
	platform := []specs.Mount{
		{Source: "proc", Destination: "/proc", Type: "proc"},
		bind(kube+"volumes/kubernetes.io~empty-dir/cache", "/cache"),
		bind(kube+"volumes/kubernetes.io~configmap/cfg", "/cfg", "ro"),
		bind(kube+"volumes/kubernetes.io~secret/s", "/s", "ro"),
		bind(kube+"volumes/kubernetes.io~projected/kube-api-access-x", "/var/run/secrets/kubernetes.io/serviceaccount", "ro"),
		bind(kube+"etc-hosts", "/etc/hosts"),
		bind(kube+"containers/app/1234", "/dev/termination-log"),
		bind("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/hostname", "/etc/hostname"),
		bind("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/resolv.conf", "/etc/resolv.conf"),
		bind("/run/containerd/io.containerd.grpc.v1.cri/sandboxes/sb1/shm", "/dev/shm"),
		bind("/run/cci/sb1/volumes/x", "/x"),
	}
	pod := func(ann map[string]string) *Pod {
		return &Pod{Type: TypeContainer, SandboxID: "sb1", UID: "uid-1", ContainerName: "app", Annotations: ann}
	}
	for _, tc := range []struct {
		name    string
		mounts  []specs.Mount
		ann     map[string]string
		want    []string // sources after rewrite, non-platform part
		dirs    []Dir
		wantErr string
	}{
		{name: "platform mounts kept"},
		{name: "hostPath refused", mounts: []specs.Mount{bind("/data/logs", "/logs")},
			wantErr: `container "app": hostPath volume "/data/logs" is not allowed (mounted at /logs); allowed: hostPath volumes replaced by annotation coordinator.cci.io/hostpath-replacement`},
		{name: "other pod's volume is a hostPath", mounts: []specs.Mount{bind("/var/lib/kubelet/pods/uid-2/volumes/kubernetes.io~secret/s", "/s")},
			wantErr: "hostPath volume"},
		{name: "other sandbox's files are hostPath", mounts: []specs.Mount{bind("/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/sb2/hosts", "/h")},
			wantErr: "hostPath volume"},
		{name: "dotdot escape is hostPath", mounts: []specs.Mount{bind(kube+"../../../../../etc", "/e")}, wantErr: `"/etc"`},
		{name: "remove by wildcard", mounts: []specs.Mount{bind("/data/logs", "/logs")},
			ann: map[string]string{AnnotationHostPathReplacement: `[{"name":"*","policyType":"remove"}]`}},
		{name: "local dir by last element", mounts: []specs.Mount{bind("/data/logs", "/logs", "ro")},
			ann:  map[string]string{AnnotationHostPathReplacement: `[{"name":"logs","policyType":"replaceByLocalDir","localDir":{"sizeLimit":"1Gi"}}]`},
			want: []string{"/run/cci/sb1/volumes/vol-logs"},
			dirs: []Dir{{Path: "/run/cci/sb1/volumes/vol-logs", Image: "/run/cci/sb1/images/vol-logs.img", Size: GiB}}},
		{name: "memory emptyDir by volume mapping", mounts: []specs.Mount{bind("/data/x/sub", "/x"), bind("/data/x", "/y")},
			ann: map[string]string{
				AnnotationHostPathReplacement: `[{"name":"vx","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"1Gi","medium":"Memory"}},{"name":"x","policyType":"remove"}]`,
				AnnotationHostPathVolumes:     `{"vx":"/data/x"}`},
			want: []string{"/run/cci/sb1/volumes/vol-vx", "/run/cci/sb1/volumes/vol-vx"},
			dirs: []Dir{{Path: "/run/cci/sb1/volumes/vol-vx", Size: GiB, Memory: true}}},
		{name: "memory emptyDir over pod memory", mounts: []specs.Mount{bind("/data/x", "/x")},
			ann:     map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"3Gi","medium":"Memory"}}]`},
			wantErr: `emptyDir sizeLimit "3 GiB" is not allowed`},
		{name: "memory emptyDir defaults to pod memory", mounts: []specs.Mount{bind("/data/x", "/x")},
			ann:  map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"replaceByEmptyDir","emptyDir":{"medium":"Memory"}}]`},
			want: []string{"/run/cci/sb1/volumes/vol-x"},
			dirs: []Dir{{Path: "/run/cci/sb1/volumes/vol-x", Size: 2 * GiB, Memory: true}}},
		{name: "wildcard key is per path", mounts: []specs.Mount{bind("/a/data", "/1"), bind("/b/data", "/2")},
			ann:  map[string]string{AnnotationHostPathReplacement: `[{"name":"*","policyType":"replaceByEmptyDir"}]`},
			want: []string{"/run/cci/sb1/volumes/path-data-" + hexOf("/a/data"), "/run/cci/sb1/volumes/path-data-" + hexOf("/b/data")}},
		{name: "no match without wildcard", mounts: []specs.Mount{bind("/data/y", "/y")},
			ann: map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"remove"}]`}, wantErr: `"/data/y"`},
		{name: "malformed annotation", mounts: nil,
			ann: map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"shred"}]`}, wantErr: `unknown policyType "shred"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := &specs.Spec{Mounts: append(append([]specs.Mount{}, platform...), tc.mounts...)}
			dirs, err := rewriteHostPaths(spec, pod(tc.ann), &cfg, 2*GiB)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range platform {
				if spec.Mounts[i].Source != m.Source {
					t.Fatalf("platform mount %d changed: %+v", i, spec.Mounts[i])
				}
			}
			rest := spec.Mounts[len(platform):]
			if len(rest) != len(tc.want) {
				t.Fatalf("mounts %+v, want sources %v", rest, tc.want)
			}
			for i, m := range rest {
				if m.Source != tc.want[i] || m.Type != "bind" {
					t.Errorf("mount %d = %+v, want source %s", i, m, tc.want[i])
				}
			}
			if tc.dirs != nil && (len(dirs) != len(tc.dirs) || dirs[0] != tc.dirs[0]) {
				t.Errorf("dirs = %+v, want %+v", dirs, tc.dirs)
			}
		})
	}
}

func hexOf(src string) string {
	_, key, _ := matchReplacement(src, []Replacement{{Name: "*"}}, nil)
	return key[strings.LastIndex(key, "-")+1:]
}
