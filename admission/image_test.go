package admission

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/sandbox"
)

// The examples of issue 15 / SPEC R26.
const (
	example1 = `[{"repositoryPrefix":"harbor.domain/a/b/c/d","replaceWith":"registry.example/org"}]`
	example2 = `[{"repositoryPrefix":"harbor.domain","replaceWith":"registry.example/org1"},
{"repositoryPrefix":"","replaceWith":"registry.example/org1"},
{"repositoryPrefix":"harbor.domain/a/b/c/d","replaceWith":"registry.example/org2"}]`
)

const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestReplaceImage(t *testing.T) {
	for _, tc := range []struct {
		rules, image, want string
	}{
		// Example 1.
		{example1, "harbor.domain/a/b/c/d/ubuntu:latest", "registry.example/org/ubuntu:latest"},
		{example1, "harbor.domain/a/b/c/d/nginx:latest", "registry.example/org/nginx:latest"},
		{example1, "harbor.domain/a/b/c/ubuntu:latest", "harbor.domain/a/b/c/ubuntu:latest"},
		{example1, "harbor.domain/a/b/c/d/e/ubuntu:latest", "harbor.domain/a/b/c/d/e/ubuntu:latest"},
		{example1, "ubuntu:latest", "ubuntu:latest"},
		// Example 2.
		{example2, "harbor.domain/ubuntu:latest", "registry.example/org1/ubuntu:latest"},
		{example2, "nginx:latest", "registry.example/org1/nginx:latest"},
		{example2, "harbor.domain/a/b/c/d/redis:latest", "registry.example/org2/redis:latest"},
		{example2, "harbor.domain/a/redis:latest", "harbor.domain/a/redis:latest"},
		{example2, "nginx", "registry.example/org1/nginx"},
		// Digests are kept, with or without a tag.
		{example1, "harbor.domain/a/b/c/d/ubuntu@" + digest, "registry.example/org/ubuntu@" + digest},
		{example1, "harbor.domain/a/b/c/d/ubuntu:22.04@" + digest, "registry.example/org/ubuntu:22.04@" + digest},
		{example2, "nginx@" + digest, "registry.example/org1/nginx@" + digest},
		// A registry port: split at the last "/", not at ":".
		{`[{"repositoryPrefix":"host:5000","replaceWith":"mirror.example/host"}]`, "host:5000/x:1.0", "mirror.example/host/x:1.0"},
		{`[{"repositoryPrefix":"host:5000/team","replaceWith":"127.0.0.1:5001/m"}]`, "host:5000/team/x", "127.0.0.1:5001/m/x"},
		{`[{"repositoryPrefix":"host","replaceWith":"m.example"}]`, "host:5000/x", "host:5000/x"},
		{`[{"repositoryPrefix":"","replaceWith":"m.example"}]`, "host:5000/x", "host:5000/x"},
		// Literal names: no Docker Hub normalisation.
		{`[{"repositoryPrefix":"docker.io/library","replaceWith":"m.example/hub"}]`, "nginx", "nginx"},
		{`[{"repositoryPrefix":"docker.io/library","replaceWith":"m.example/hub"}]`, "docker.io/library/nginx:1", "m.example/hub/nginx:1"},
		// Not a valid reference: left for the kubelet to report.
		{example2, "Nginx:latest", "Nginx:latest"},
		{example2, "", ""},
		{example2, "nginx:", "nginx:"},
		// No rules.
		{`[]`, "nginx", "nginx"},
	} {
		rules, err := ParseImageReplacement(tc.rules)
		if err != nil {
			t.Fatalf("ParseImageReplacement(%s): %v", tc.rules, err)
		}
		got, ok, err := ReplaceImage(tc.image, rules)
		if err != nil || got != tc.want || ok != (tc.image != tc.want) {
			t.Errorf("ReplaceImage(%q) with %s = %q, %v, %v; want %q", tc.image, tc.rules, got, ok, err, tc.want)
		}
		// Order of entries does not change the result.
		slices.Reverse(rules)
		if got2, _, _ := ReplaceImage(tc.image, rules); got2 != got {
			t.Errorf("ReplaceImage(%q) with reversed rules = %q, want %q", tc.image, got2, got)
		}
	}
}

func TestReplaceImageInvalidResult(t *testing.T) {
	long := "registry.example/" + strings.Repeat("a", 250)
	rules, err := ParseImageReplacement(`[{"repositoryPrefix":"","replaceWith":"` + long + `"}]`)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := ReplaceImage("nginx:1", rules)
	var rw *ImageRewriteError
	if !errors.As(err, &rw) || ok || got != "nginx:1" {
		t.Fatalf("ReplaceImage with a too long result = %q, %v, %v; want the image unchanged and an ImageRewriteError", got, ok, err)
	}
	if !strings.Contains(err.Error(), `image "nginx:1"`) || !strings.Contains(err.Error(), "not a valid image reference") {
		t.Errorf("error %q does not name the image and the rule", err)
	}
}

func TestParseImageReplacementErrors(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{`{}`, "cannot unmarshal"},
		{`[{"repositoryPrefix":"a","replaceWith":"b","x":1}]`, `unknown field "x"`},
		{`[] []`, "trailing data"},
		{`[{"replaceWith":"b"}]`, "entry 0: repositoryPrefix is missing"},
		{`[{"repositoryPrefix":"a"}]`, `entry 0 (repositoryPrefix "a"): replaceWith is missing or empty`},
		{`[{"repositoryPrefix":"a","replaceWith":""}]`, `entry 0 (repositoryPrefix "a"): replaceWith is missing or empty`},
		{`[{"repositoryPrefix":"a/","replaceWith":"b"}]`, `entry 0 (repositoryPrefix "a/"): repositoryPrefix "a/" ends with "/"`},
		{`[{"repositoryPrefix":"a","replaceWith":"b/"}]`, `entry 0 (repositoryPrefix "a"): replaceWith "b/" ends with "/"`},
		{`[{"repositoryPrefix":"a","replaceWith":"Org/B"}]`, `replaceWith "Org/B" does not follow the image name rules`},
		{`[{"repositoryPrefix":"a b","replaceWith":"b"}]`, `repositoryPrefix "a b" does not follow the image name rules`},
		{`[{"repositoryPrefix":"a:tag","replaceWith":"b"}]`, `repositoryPrefix "a:tag" does not follow the image name rules`},
		{`[{"repositoryPrefix":"a@sha256:x","replaceWith":"b"}]`, `does not follow the image name rules`},
		{`[{"repositoryPrefix":"/a","replaceWith":"b"}]`, `does not follow the image name rules`},
		{`[{"repositoryPrefix":"a","replaceWith":"a"}]`, `entry 0 (repositoryPrefix "a"): replaceWith "a" equals repositoryPrefix`},
		{`[{"repositoryPrefix":"a","replaceWith":"b"},{"repositoryPrefix":"a","replaceWith":"c"}]`,
			`entry 1 (repositoryPrefix "a"): repositoryPrefix is already used by entry 0`},
		{`[{"repositoryPrefix":"","replaceWith":"b"},{"repositoryPrefix":"","replaceWith":"c"}]`,
			`entry 1 (repositoryPrefix ""): repositoryPrefix is already used by entry 0`},
		{`[` + strings.Repeat(`{"repositoryPrefix":"a","replaceWith":"b"},`, 64) + `{"repositoryPrefix":"a","replaceWith":"b"}]`, "65 entries; at most 64"},
	} {
		_, err := ParseImageReplacement(tc.value)
		var pe *sandbox.PolicyError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseImageReplacement(%s) = %v; want a PolicyError containing %q", tc.value, err, tc.want)
			continue
		}
		if pe.Field != "annotation "+AnnotationImageReplacement || !strings.Contains(pe.Allowed, "JSON list") {
			t.Errorf("error %q does not name the annotation and the format", err)
		}
	}
}

func TestParseImageReplacementAccepts(t *testing.T) {
	for _, v := range []string{`[]`, `null`, example1, example2,
		`[{"repositoryPrefix":"127.0.0.1:5000/mirror","replaceWith":"[::1]:5000/m"}]`,
		`[{"repositoryPrefix":"Harbor.Domain","replaceWith":"registry.example/a__b/c-d/e.f"}]`,
	} {
		if _, err := ParseImageReplacement(v); err != nil {
			t.Errorf("ParseImageReplacement(%s) = %v; want nil", v, err)
		}
	}
}
