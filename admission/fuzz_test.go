package admission

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// FuzzParseImageReplacement: the parser never panics, and every list it
// accepts follows R26's field rules.
func FuzzParseImageReplacement(f *testing.F) {
	for _, s := range []string{example1, example2, `[]`, `null`, `[{"repositoryPrefix":"a/","replaceWith":"b"}]`,
		`[{"repositoryPrefix":"host:5000","replaceWith":"m.example/x"}]`, `[{"repositoryPrefix":"","replaceWith":""}]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		rules, err := ParseImageReplacement(v)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range rules {
			if seen[r.RepositoryPrefix] || r.ReplaceWith == "" || r.ReplaceWith == r.RepositoryPrefix ||
				strings.HasSuffix(r.ReplaceWith, "/") || strings.HasSuffix(r.RepositoryPrefix, "/") {
				t.Fatalf("accepted %q with entry %+v", v, r)
			}
			seen[r.RepositoryPrefix] = true
		}
	})
}

// FuzzReplaceImage: the rewrite never panics; a replaced image is a valid
// reference keeping the tag and digest; an image nothing matches comes back
// unchanged, and so does a second rewrite of it (idempotent); the order of
// the rules does not matter. The rules are built from fuzzed fields (and the
// image is tried as is and under the prefix) so that matches are common.
func FuzzReplaceImage(f *testing.F) {
	f.Add("harbor.domain/a/b/c/d", "registry.example/org", "", "registry.example/org1", "ubuntu:latest")
	f.Add("harbor.domain", "registry.example/org1", "", "registry.example/org1", "nginx@"+digest)
	f.Add("host:5000", "m.example", "", "m.example/x", "x:1.0@"+digest)
	f.Add("a", "b", "", strings.Repeat("a", 250), "nginx")
	f.Fuzz(func(t *testing.T, prefix1, with1, prefix2, with2, image string) {
		annotation, err := json.Marshal([]map[string]string{
			{"repositoryPrefix": prefix1, "replaceWith": with1},
			{"repositoryPrefix": prefix2, "replaceWith": with2},
		})
		if err != nil {
			return
		}
		rules, err := ParseImageReplacement(string(annotation))
		if err != nil {
			return
		}
		checkReplace(t, rules, image)
		checkReplace(t, rules, prefix1+"/"+image)
		checkReplace(t, rules, prefix2+"/"+image)
	})
}

func checkReplace(t *testing.T, rules []ImageReplacement, image string) {
	out, ok, err := ReplaceImage(image, rules)
	if err != nil || !ok {
		if out != image {
			t.Fatalf("ReplaceImage(%q) = %q, %v, %v: changed the image without replacing it", image, out, ok, err)
		}
		if again, ok2, _ := ReplaceImage(out, rules); err == nil && (again != out || ok2) {
			t.Fatalf("ReplaceImage not idempotent on unmatched %q: %q", out, again)
		}
		return
	}
	got, err := reference.Parse(out)
	if err != nil {
		t.Fatalf("ReplaceImage(%q) = %q, not a valid reference: %v", image, out, err)
	}
	in, _ := reference.Parse(image)
	tagOf := func(r reference.Reference) string {
		if t, ok := r.(reference.Tagged); ok {
			return t.Tag()
		}
		return ""
	}
	digestOf := func(r reference.Reference) string {
		if d, ok := r.(reference.Digested); ok {
			return d.Digest().String()
		}
		return ""
	}
	if tagOf(in) != tagOf(got) || digestOf(in) != digestOf(got) {
		t.Fatalf("ReplaceImage(%q) = %q: tag or digest changed", image, out)
	}
	reversed := slices.Clone(rules)
	slices.Reverse(reversed)
	if out2, _, _ := ReplaceImage(image, reversed); out2 != out {
		t.Fatalf("ReplaceImage(%q) depends on rule order: %q vs %q", image, out, out2)
	}
}

// FuzzValidatePodAnnotations: never panics on any key and value; a key in
// the platform's domains that is not known is always refused.
func FuzzValidatePodAnnotations(f *testing.F) {
	f.Add("shm.cci.io/size", "128Mi")
	f.Add("coordinator.cci.io/image-replacement", example2)
	f.Add("resources.cci.io/containers", `[{"name":"a","limits":{"cpu":"1"}}]`)
	f.Add("throttle.cci.io/stdio-bps", "1")
	f.Add("monitoring.cci.io/metrics-port", "19100")
	f.Add("x.cci.io/y", "z")
	f.Fuzz(func(t *testing.T, key, value string) {
		err := ValidatePodAnnotations(map[string]string{key: value})
		if IsPlatformAnnotation(key) && !slices.Contains(KnownAnnotations, key) && err == nil {
			t.Fatalf("unknown platform annotation %q accepted", key)
		}
	})
}
