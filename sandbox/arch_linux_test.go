package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCheckArch(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "usr/bin/app"), elfHeader(183), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin/script"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(outside, "evil"), elfHeader(183), 0o755))
	must(os.Symlink("/usr/bin/app", filepath.Join(root, "bin/abs-link")))
	must(os.Symlink(filepath.Join(outside, "evil"), filepath.Join(root, "bin/escape")))
	must(os.Symlink("../../../../../../../.."+outside+"/evil", filepath.Join(root, "bin/dotdot")))
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"app"}, nil, "/usr/bin/app"},
		{[]string{"app"}, []string{"PATH=/nope:/usr/bin"}, "/usr/bin/app"},
		{[]string{"app"}, []string{"PATH=/bin"}, ""},
		{[]string{"/usr/bin/app"}, nil, "/usr/bin/app"},
		{[]string{"/bin/abs-link"}, nil, "/bin/abs-link"}, // absolute symlink resolves inside the rootfs
		{[]string{"/bin/escape"}, nil, ""},
		{[]string{"/bin/dotdot"}, nil, ""},
		{[]string{"script"}, nil, ""},
		{[]string{"missing"}, nil, ""},
		{nil, nil, ""},
	} {
		spec := &specs.Spec{Process: &specs.Process{Args: tc.args, Env: tc.env, Cwd: "/"}}
		err := CheckArch(root, spec, "app", "amd64")
		var ae *ArchError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: unexpected %v", tc.args, err)
		case tc.want != "" && (!errors.As(err, &ae) || ae.Entrypoint != tc.want || ae.ImageArch != "arm64"):
			t.Errorf("%v: err = %v, want ArchError for %s", tc.args, err, tc.want)
		}
	}
	if err := CheckArch(filepath.Join(root, "nope"), &specs.Spec{Process: &specs.Process{Args: []string{"app"}}}, "app", "amd64"); err != nil {
		t.Errorf("unreachable rootfs: %v", err)
	}
}
