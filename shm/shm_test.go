package shm

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      Input
		want    int64
		src     Source
		wantErr string
	}{
		{"default", Input{}, 64 << 20, FromDefault, ""},
		{"node default", Input{Default: 32 << 20}, 32 << 20, FromDefault, ""},
		{"annotation", Input{Annotation: 128 << 20, PodMemory: 1 << 30}, 128 << 20, FromAnnotation, ""},
		{"annotation beats emptyDir", Input{Annotation: 128 << 20, EmptyDir: 256 << 20}, 128 << 20, FromAnnotation, ""},
		{"emptyDir", Input{EmptyDir: 256 << 20}, 256 << 20, FromEmptyDir, ""},
		{"rounded to pages", Input{Annotation: 100000000}, 100003840, FromAnnotation, ""},
		{"equal to pod memory", Input{Annotation: 1 << 30, PodMemory: 1 << 30}, 1 << 30, FromAnnotation, ""},
		{"over pod memory", Input{Annotation: 1<<30 + 4096, PodMemory: 1 << 30}, 0, FromAnnotation,
			"/dev/shm size 1048580 KiB (from annotation shm.cci.io/size) is larger than the pod memory 1 GiB; allowed: at most the pod memory (half of it is advised)"},
		{"default over tiny pod", Input{PodMemory: 1 << 20}, 0, FromDefault, "larger than the pod memory 1 MiB"},
		{"negative", Input{Annotation: -1}, 0, FromAnnotation, "is not allowed"},
	} {
		got, src, err := Size(tc.in)
		if tc.wantErr != "" {
			var se *SizeError
			if err == nil || !errors.As(err, &se) || !errors.Is(err, errdefs.ErrInvalidArgument) ||
				!contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || src != tc.src {
			t.Errorf("%s: got %d %s %v, want %d %s", tc.name, got, src, err, tc.want, tc.src)
		}
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
