package admission

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cci-shim/cci-shim/gpu"
	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/logfwd"
	"github.com/cci-shim/cci-shim/sandbox"
)

func TestValidatePodAnnotationsAccepts(t *testing.T) {
	ann := map[string]string{
		sandbox.AnnotationHostPathReplacement: `[{"name":"*","policyType":"replaceByEmptyDir","emptyDir":{"sizeLimit":"64Mi"}}]`,
		sandbox.AnnotationHostPathVolumes:     `{"data":"/srv/data"}`,
		AnnotationImageReplacement:            example2,
		sandbox.AnnotationContainers:          `[{"name":"app","limits":{"cpu":"500m","memory":"1073741824"}}]`,
		sandbox.AnnotationShmSize:             "128Mi",
		iothrottle.AnnotationRootfsWriteBps:   "1000000",
		logfwd.AnnotationPolicies:             `[{"container":"app","paths":["/var/log/app/*.log"]}]`,
		gpu.AnnotationCount:                   "1",
		gpu.AnnotationModel:                   "T4",
		AnnotationEnablePodMetrics:            "false",
		AnnotationMetricsPort:                 "19200",
		"example.com/other":                   "anything",
		"cci.io.example.com/x":                "not a platform domain",
	}
	if err := ValidatePodAnnotations(ann); err != nil {
		t.Fatalf("ValidatePodAnnotations = %v; want nil", err)
	}
	if err := ValidatePodAnnotations(nil); err != nil {
		t.Fatalf("ValidatePodAnnotations(nil) = %v; want nil", err)
	}
}

// TestValidatePodAnnotationsSameMessages: each refusal is the error the
// shim's own parser gives for the same value.
func TestValidatePodAnnotationsSameMessages(t *testing.T) {
	shimError := func(f func() error) string { return f().Error() }
	for _, tc := range []struct {
		key, value, want string
	}{
		{sandbox.AnnotationHostPathReplacement, `[{"name":"x","policyType":"bogus"}]`, shimError(func() error {
			_, err := sandbox.ParseHostPathReplacement(`[{"name":"x","policyType":"bogus"}]`)
			return err
		})},
		{sandbox.AnnotationHostPathVolumes, `{"x":"relative"}`, shimError(func() error {
			_, err := sandbox.ParseHostPathVolumes(`{"x":"relative"}`)
			return err
		})},
		{sandbox.AnnotationContainers, `[{"name":"a","limits":{"cpu":"1e3"}}]`, shimError(func() error {
			_, err := sandbox.ParseContainers(`[{"name":"a","limits":{"cpu":"1e3"}}]`)
			return err
		})},
		{iothrottle.AnnotationStdioBps, "fast", shimError(func() error {
			_, err := iothrottle.LimitsFromConfig(iothrottle.DefaultNodeLimits(), map[string]string{iothrottle.AnnotationStdioBps: "fast"})
			return err
		})},
		{iothrottle.AnnotationPrefix + "rootfs-bps", "1", shimError(func() error {
			_, err := iothrottle.LimitsFromConfig(iothrottle.DefaultNodeLimits(), map[string]string{iothrottle.AnnotationPrefix + "rootfs-bps": "1"})
			return err
		})},
		{logfwd.AnnotationPolicies, `[{"container":"app","paths":["/proc/x.log"]}]`, shimError(func() error {
			_, err := logfwd.ParsePolicies(`[{"container":"app","paths":["/proc/x.log"]}]`)
			return err
		})},
		{gpu.AnnotationCount, "99", shimError(func() error {
			_, err := gpu.ParseRequest(&specs.Spec{Annotations: map[string]string{gpu.AnnotationCount: "99"}})
			return err
		})},
		{gpu.AnnotationModel, "T4", shimError(func() error {
			_, err := gpu.ParseRequest(&specs.Spec{Annotations: map[string]string{gpu.AnnotationModel: "T4"}})
			return err
		})},
		{sandbox.AnnotationShmSize, "-1", `annotation shm.cci.io/size "-1" is not allowed (not a positive memory quantity); allowed: a memory quantity such as 128Mi, at most the pod memory`},
		{sandbox.AnnotationShmSize, "0", `annotation shm.cci.io/size "0" is not allowed (not a positive memory quantity)`},
		{AnnotationImageReplacement, `[{"repositoryPrefix":"a","replaceWith":"a"}]`, `entry 0 (repositoryPrefix "a"): replaceWith "a" equals repositoryPrefix`},
		{AnnotationEnablePodMetrics, "no", `annotation monitoring.cci.io/enable-pod-metrics "no" is not allowed`},
		{AnnotationMetricsPort, "0", `annotation monitoring.cci.io/metrics-port "0" is not allowed`},
		{AnnotationMetricsPort, "80", `annotation monitoring.cci.io/metrics-port "80" is not allowed`},
		{AnnotationMetricsPort, "65536", `annotation monitoring.cci.io/metrics-port "65536" is not allowed`},
		{AnnotationMetricsPort, "+80", `annotation monitoring.cci.io/metrics-port "+80" is not allowed`},
	} {
		err := ValidatePodAnnotations(map[string]string{tc.key: tc.value})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: ValidatePodAnnotations = %v; want %q", tc.key, tc.value, err, tc.want)
		}
	}
}

func TestValidatePodAnnotationsUnknownKeys(t *testing.T) {
	err := ValidatePodAnnotations(map[string]string{
		"shm.cci.io/sise":         "1Gi",
		"cci.io/anything":         "x",
		"new.team.cci.io/flag":    "on",
		sandbox.AnnotationShmSize: "0",
	})
	if err == nil {
		t.Fatal("unknown platform annotations accepted")
	}
	msg := err.Error()
	lines := strings.Split(msg, "\n")
	if len(lines) != 4 {
		t.Fatalf("want one line per problem (3 unknown keys, 1 bad value), got:\n%s", msg)
	}
	for i, k := range []string{"cci.io/anything", "new.team.cci.io/flag", "shm.cci.io/sise"} {
		if !strings.HasPrefix(lines[i], `annotation "`+k+`" is not a platform annotation`) {
			t.Errorf("line %d = %q; want the unknown key %s first, sorted", i, lines[i], k)
		}
		for _, known := range KnownAnnotations {
			if !strings.Contains(lines[i], known) {
				t.Errorf("line %q does not list the known key %s", lines[i], known)
			}
		}
	}
	if !strings.Contains(lines[3], "shm.cci.io/size") {
		t.Errorf("last line %q: want the shm size error", lines[3])
	}
}

func TestIsPlatformAnnotation(t *testing.T) {
	for k, want := range map[string]bool{
		"cci.io/x": true, "a.cci.io/x": true, "a.b.cci.io/x": true,
		"xcci.io/x": false, "cci.io.evil/x": false, "cci.io": false, "kubernetes.io/x": false, "x": false,
	} {
		if got := IsPlatformAnnotation(k); got != want {
			t.Errorf("IsPlatformAnnotation(%q) = %v; want %v", k, got, want)
		}
	}
}
