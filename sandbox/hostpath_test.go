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

func TestHostPathReplacement(t *testing.T) {
	vol := tPodDir + "/volumes/"
	key := func(name string) string { return "vol-" + HashKey("volume", name) }
	for _, tc := range []struct {
		name    string
		mounts  []specs.Mount
		ann     map[string]string
		want    []string // sources after rewrite of tc.mounts
		dirs    []Dir
		wantErr string
	}{
		{name: "platform mounts kept"},
		{name: "hostPath refused", mounts: []specs.Mount{bind("/data/logs", "/logs")},
			wantErr: `container "app": hostPath volume "/data/logs" is not allowed (mounted at /logs); allowed: hostPath volumes replaced by annotation coordinator.cci.io/hostpath-replacement`},
		{name: "other pod's volume is a hostPath", mounts: []specs.Mount{bind(tKubelet+"/pods/"+tOtherUID+"/volumes/kubernetes.io~secret/s", "/s")},
			wantErr: "hostPath volume"},
		{name: "other sandbox's files are hostPath", mounts: []specs.Mount{bind(tCRIRoot+"/sandboxes/"+tOtherID+"/hosts", "/h")},
			wantErr: "belongs to another CRI sandbox or container"},
		{name: "dotdot source refused", mounts: []specs.Mount{bind(tKubelet+"/pods/"+tUID+"/../../../../../etc", "/e")}, wantErr: "not an absolute path without '..'"},
		{name: "remove by wildcard", mounts: []specs.Mount{bind("/data/logs", "/logs")},
			ann: map[string]string{AnnotationHostPathReplacement: `[{"name":"*","policyType":"remove"}]`}},
		{name: "local dir by last element", mounts: []specs.Mount{bind("/data/logs", "/logs", "ro")},
			ann:  map[string]string{AnnotationHostPathReplacement: `[{"name":"logs","policyType":"replaceByLocalDir","localDir":{"sizeLimit":"1Gi"}}]`},
			want: []string{vol + key("logs")},
			dirs: []Dir{{Path: vol + key("logs"), Image: tPodDir + "/images/" + key("logs") + ".img", Size: GiB}}},
		{name: "memory emptyDir by volume mapping", mounts: []specs.Mount{bind("/data/x/sub", "/x"), bind("/data/x", "/y")},
			ann: map[string]string{
				AnnotationHostPathReplacement: `[{"name":"vx","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"1Gi","medium":"Memory"}},{"name":"x","policyType":"remove"}]`,
				AnnotationHostPathVolumes:     `{"vx":"/data/x"}`},
			want: []string{vol + key("vx"), vol + key("vx")},
			dirs: []Dir{{Path: vol + key("vx"), Size: GiB, Memory: true}}},
		{name: "memory emptyDir over pod memory", mounts: []specs.Mount{bind("/data/x", "/x")},
			ann:     map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"3Gi","medium":"Memory"}}]`},
			wantErr: `emptyDir sizeLimit "3 GiB" is not allowed`},
		{name: "memory emptyDir defaults to pod memory", mounts: []specs.Mount{bind("/data/x", "/x")},
			ann:  map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"replaceByEmptyDir","emptyDir":{"medium":"Memory"}}]`},
			want: []string{vol + key("x")},
			dirs: []Dir{{Path: vol + key("x"), Size: 2 * GiB, Memory: true}}},
		{name: "wildcard key is per path", mounts: []specs.Mount{bind("/a/data", "/1"), bind("/b/data", "/2")},
			ann:  map[string]string{AnnotationHostPathReplacement: `[{"name":"*","policyType":"replaceByEmptyDir"}]`},
			want: []string{vol + "path-" + HashKey("path", "/a/data"), vol + "path-" + HashKey("path", "/b/data")}},
		{name: "no match without wildcard", mounts: []specs.Mount{bind("/data/y", "/y")},
			ann: map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"remove"}]`}, wantErr: `"/data/y"`},
		{name: "malformed annotation", mounts: nil,
			ann: map[string]string{AnnotationHostPathReplacement: `[{"name":"x","policyType":"shred"}]`}, wantErr: `unknown policyType "shred"`},
		{name: "a name with a path in it stays one hashed component", mounts: []specs.Mount{bind("/data/logs", "/logs")},
			ann:  map[string]string{AnnotationHostPathReplacement: `[{"name":"../../../etc","policyType":"replaceByEmptyDir"}]`, AnnotationHostPathVolumes: `{"../../../etc":"/data/logs"}`},
			want: []string{vol + key("../../../etc")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := criContainer()
			platform := len(spec.Mounts)
			spec.Mounts = append(spec.Mounts, tc.mounts...)
			for k, v := range tc.ann {
				spec.Annotations[k] = v
			}
			pod, err := PodFromSpec(spec)
			if err != nil {
				t.Fatal(err)
			}
			pod.ID = tContainerID
			cfg := baseConfig("k8s.io").withDefaults()
			mp, err := checkMounts(spec, pod, &cfg, 2*GiB)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(mp.pins) != 6 {
				t.Errorf("pins = %d, want the 6 platform binds of the fixture (all but /dev/shm)", len(mp.pins))
			}
			rest := spec.Mounts[platform:]
			if len(rest) != len(tc.want) {
				t.Fatalf("mounts %+v, want sources %v", rest, tc.want)
			}
			for i, m := range rest {
				if m.Source != tc.want[i] || m.Type != "bind" {
					t.Errorf("mount %d = %+v, want source %s", i, m, tc.want[i])
				}
			}
			if tc.dirs != nil && (len(mp.dirs) != len(tc.dirs) || mp.dirs[0] != tc.dirs[0]) {
				t.Errorf("dirs = %+v, want %+v", mp.dirs, tc.dirs)
			}
		})
	}
}

// TestMatchReplacementPrefersTheInnerVolume: a hostPath volume inside
// another volume's path takes its own entry, whatever the names' order.
func TestMatchReplacementPrefersTheInnerVolume(t *testing.T) {
	repl := []Replacement{{Name: "a-outer", Policy: PolicyRemove}, {Name: "z-inner", Policy: PolicyReplaceByEmptyDir}}
	vols := map[string]string{"a-outer": "/data", "z-inner": "/data/cache"}
	r, _, ok := matchReplacement("/data/cache/x", repl, vols)
	if !ok || r.Name != "z-inner" {
		t.Errorf("/data/cache/x matched %+v, want z-inner", r)
	}
	r, _, ok = matchReplacement("/data/other", repl, vols)
	if !ok || r.Name != "a-outer" {
		t.Errorf("/data/other matched %+v, want a-outer", r)
	}
}
