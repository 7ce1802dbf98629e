package version

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/cci-shim/cci-shim", Version: "(devel)"},
		Deps: []*debug.Module{{Path: containerdModule, Version: "v2.4.2"}},
	}
	for _, tc := range []struct {
		name     string
		ver, rev string
		bi       *debug.BuildInfo
		want     Info
	}{
		{"stamped", "v1.2.0", "abc123", bi, Info{Version: "v1.2.0", Revision: "abc123", Containerd: "v2.4.2"}},
		{"not stamped", "", "", bi, Info{Version: Unknown, Revision: Unknown, Containerd: "v2.4.2"}},
		{"vcs info", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "fff"}}},
			Info{Version: "v0.3.0", Revision: "fff"}},
		{"no build info", "", "", nil, Info{Version: Unknown, Revision: Unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := build(tc.ver, tc.rev, tc.bi)
			if got.GoVersion == "" {
				t.Error("no Go version")
			}
			if tc.want.Containerd == "" {
				tc.want.Containerd = got.Containerd // the containerd package's own default
				if got.Containerd == "" {
					t.Error("no containerd version")
				}
			}
			tc.want.GoVersion = got.GoVersion
			if got != tc.want {
				t.Errorf("build = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPrint(t *testing.T) {
	old := Version
	Version = "v9.9.9-test"
	defer func() { Version = old }()
	var b bytes.Buffer
	Print(&b, "cci-agent")
	out := b.String()
	if !strings.HasPrefix(out, "cci-agent (cci-shim) v9.9.9-test\n") || !strings.Contains(out, "containerd: ") {
		t.Errorf("Print = %q", out)
	}
	if !strings.Contains(Get().String(), "cci-shim v9.9.9-test") {
		t.Errorf("String = %q", Get().String())
	}
}
