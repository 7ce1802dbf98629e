package logfwd

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePolicies(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		wantErr string // substring; "" means valid
		watches int
	}{
		{"empty", "", "", 0},
		{"one", `[{"container":"app","paths":["/var/log/app/*.log"]}]`, "", 1},
		{"full", `[{"container":"app","paths":["/var/log/app/*.log","/data/logs/x-?.txt"],"destination":"forward","tag":"app.x","long_lines":"drop"}]`, "", 2},
		{"not a list", `{"container":"app"}`, "JSON list", 0},
		{"unknown field", `[{"container":"app","paths":["/a/*.log"],"pathz":1}]`, "unknown field", 0},
		{"relative", `[{"container":"app","paths":["var/log/*.log"]}]`, `must be absolute`, 0},
		{"dotdot", `[{"container":"app","paths":["/var/log/../../etc/*.log"]}]`, `'..'`, 0},
		{"proc", `[{"container":"app","paths":["/proc/self/*.log"]}]`, `under /proc`, 0},
		{"sys cgroup", `[{"container":"app","paths":["/sys/fs/cgroup/*"]}]`, `/sys`, 0},
		{"dev shm", `[{"container":"app","paths":["/dev/shm/*.log"]}]`, `/dev`, 0},
		{"run", `[{"container":"app","paths":["/run/app/*.log"]}]`, `/run`, 0},
		{"etc hidden", `[{"container":"app","paths":["/etc/*.conf"]}]`, `would be hidden`, 0},
		{"wildcard dir", `[{"container":"app","paths":["/var/*/app.log"]}]`, `last component only`, 0},
		{"bad pattern", `[{"container":"app","paths":["/var/log/[.log"]}]`, `bad pattern`, 0},
		{"long literal name", `[{"container":"app","paths":["/var/log/` + strings.Repeat("a", 191) + `"]}]`, `names over 190`, 0},
		{"bad container", `[{"container":"App_1","paths":["/var/log/*.log"]}]`, `DNS-1123`, 0},
		{"no paths", `[{"container":"app","paths":[]}]`, `between 1 and`, 0},
		{"bad destination", `[{"container":"app","paths":["/a/*.log"],"destination":"s3"}]`, `destination "s3"`, 0},
		{"bad long_lines", `[{"container":"app","paths":["/a/*.log"],"long_lines":"keep"}]`, `long_lines "keep"`, 0},
		{"bad tag", `[{"container":"app","paths":["/a/*.log"],"tag":"a b"}]`, `tag "a b"`, 0},
		{"duplicate", `[{"container":"app","paths":["/a/*.log"]},{"container":"app","paths":["/a/*.log"]}]`, `already declared`, 0},
		{"trailing", `[] []`, `trailing`, 0},
		{"trailing slash", `[{"container":"app","paths":["/var/log/"]}]`, `not a directory`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := ParsePolicies(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if n := len(Watches(ps)); n != tc.watches {
					t.Fatalf("%d watches, want %d", n, tc.watches)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), AnnotationPolicies) {
				t.Errorf("error does not name the annotation: %v", err)
			}
		})
	}
}

func TestHostDir(t *testing.T) {
	cases := []struct {
		container, dir string
	}{
		{"app", "/var/log/app"},
		{"app", "/var/log_app"},
		{"app", "/var/log/../../../etc"},
		{"..", "/x"},
		{"", "/x"},
		{"a/b", "/x"},
		{"app", "/" + strings.Repeat("d", 300)},
		{"app", "/" + strings.Repeat("d", 301)},
	}
	seen := map[string]string{}
	for _, tc := range cases {
		got := HostDir("/root", tc.container, tc.dir)
		rel, err := filepath.Rel("/root", got)
		if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, "/") != 1 {
			t.Errorf("HostDir(%q, %q) = %q escapes or is not two components", tc.container, tc.dir, got)
		}
		for _, c := range strings.Split(rel, "/") {
			if c == "." || c == ".." || c == "" || len(c) > 255 {
				t.Errorf("HostDir(%q, %q): bad component %q", tc.container, tc.dir, c)
			}
		}
		k := tc.container + "\x00" + tc.dir
		if prev, dup := seen[got]; dup && prev != k {
			t.Errorf("HostDir collision: %q for %q and %q", got, prev, k)
		}
		seen[got] = k
	}
}
