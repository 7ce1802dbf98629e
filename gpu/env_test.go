package gpu

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestInjectEnv(t *testing.T) {
	lib, bin := ContainerLibDir, ContainerBinDir
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"empty env gets a default PATH", nil,
			[]string{"LD_LIBRARY_PATH=" + lib, "PATH=" + DefaultPath + ":" + bin}},
		{"user's values kept first", []string{"PATH=/app/bin:/usr/bin", "LD_LIBRARY_PATH=/app/lib", "X=1"},
			[]string{"PATH=/app/bin:/usr/bin:" + bin, "LD_LIBRARY_PATH=/app/lib:" + lib, "X=1"}},
		{"already present: no duplicate", []string{"LD_LIBRARY_PATH=" + lib + ":/app/lib", "PATH=" + bin},
			[]string{"LD_LIBRARY_PATH=" + lib + ":/app/lib", "PATH=" + bin}},
		{"empty entries dropped", []string{"LD_LIBRARY_PATH=:/a::/a:", "PATH="},
			[]string{"LD_LIBRARY_PATH=/a:" + lib, "PATH=" + bin}},
		{"repeated variable: first kept and merged", []string{"PATH=/x", "LD_LIBRARY_PATH=/one", "LD_LIBRARY_PATH=/two"},
			[]string{"PATH=/x:" + bin, "LD_LIBRARY_PATH=/one:" + lib}},
		{"value with '='", []string{"LD_LIBRARY_PATH=/a=b", "PATH=/bin"},
			[]string{"LD_LIBRARY_PATH=/a=b:" + lib, "PATH=/bin:" + bin}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &specs.Process{Env: append([]string(nil), tt.env...)}
			InjectEnv(p)
			if !reflect.DeepEqual(p.Env, tt.want) {
				t.Errorf("got  %q\nwant %q", p.Env, tt.want)
			}
			InjectEnv(p) // exec after exec: idempotent
			if !reflect.DeepEqual(p.Env, tt.want) {
				t.Errorf("second InjectEnv changed env to %q", p.Env)
			}
		})
	}
	InjectEnv(nil) // must not panic
}
