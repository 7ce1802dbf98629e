package shim

import (
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cci-shim/cci-shim/logfwd"
)

func TestCheckLogMounts(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatalf("/dev/shm is not a tmpfs here (%v)", err)
	}
	disk, err := os.Getwd() // the source tree: on disk
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Statfs(disk, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		t.Fatalf("the source tree %s is on a tmpfs (%v)", disk, err)
	}
	watches := logfwd.Watches([]logfwd.Policy{{Container: "app", Paths: []string{"/var/log/app/*.log"}}})
	for _, tc := range []struct {
		name   string
		mounts []specs.Mount
		want   string
	}{
		{"no mounts", nil, ""},
		{"tmpfs at the log dir", []specs.Mount{{Destination: "/var/log/app", Type: "tmpfs", Source: "tmpfs"}}, "is on a tmpfs mount (at /var/log/app)"},
		{"tmpfs above it", []specs.Mount{{Destination: "/var/log/", Type: "tmpfs", Source: "tmpfs"}}, "(at /var/log)"},
		{"tmpfs beside it", []specs.Mount{{Destination: "/var/log/application", Type: "tmpfs"}, {Destination: "/tmp", Type: "tmpfs"}}, ""},
		{"bind of a tmpfs", []specs.Mount{{Destination: "/var/log/app", Type: "bind", Source: "/dev/shm", Options: []string{"rbind"}}}, "(at /var/log/app)"},
		{"bind of a disk dir", []specs.Mount{{Destination: "/var/log/app", Source: disk, Options: []string{"rbind", "rw"}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &specs.Spec{Mounts: tc.mounts}
			err := checkLogMounts("app", s, watches)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if err := checkLogMounts("other", &specs.Spec{Mounts: []specs.Mount{{Destination: "/var/log/app", Type: "tmpfs"}}}, watches); err != nil {
					t.Errorf("another container's mounts: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `path "/var/log/app/*.log" of container "app"`) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
