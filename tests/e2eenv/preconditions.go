//go:build linux

package e2eenv

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cci-shim/cci-shim/internal/testutil"
)

const (
	// ToolsDirEnv names the dir with containerd, ctr and containerd-shim-runc-v2
	// (default <repo>/.tools/bin).
	ToolsDirEnv = "CCI_TOOLS_DIR"
	// BinDirEnv names the dir with containerd-shim-cci-v2 (default <repo>/bin).
	BinDirEnv = "CCI_BIN_DIR"
	// BusyboxPath is Debian's busybox-static, packed into the test image.
	BusyboxPath = "/bin/busybox"
	// CNIBinDir is where Debian's containernetworking-plugins puts the plugins.
	CNIBinDir = "/usr/lib/cni"
)

// systemPath is searched for host tools, whatever the test's PATH is.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

type toolPaths struct {
	toolsDir, binDir           string
	containerd, ctr, runcShim  string
	mkfsXFS, mkfsExt4, losetup string
	runc, ip                   string
}

// checkPreconditions finds everything Start needs, or skips the test naming what is missing
// (fails it when CI=true).
func checkPreconditions(t TB, opts Options) toolPaths {
	t.Helper()
	var missing []string
	miss := func(format string, args ...any) { missing = append(missing, fmt.Sprintf(format, args...)) }

	if os.Geteuid() != 0 {
		miss("root (running as uid %d)", os.Geteuid())
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		miss("/dev/loop-control (%v)", err)
	}

	root, rootErr := RepoRoot()
	tp := toolPaths{toolsDir: os.Getenv(ToolsDirEnv), binDir: os.Getenv(BinDirEnv)}
	if tp.toolsDir == "" || tp.binDir == "" {
		if rootErr != nil {
			miss("the repository root (%v); set %s and %s", rootErr, ToolsDirEnv, BinDirEnv)
		}
		if tp.toolsDir == "" {
			tp.toolsDir = filepath.Join(root, ".tools", "bin")
		}
		if tp.binDir == "" {
			tp.binDir = filepath.Join(root, "bin")
		}
	}
	tool := func(name string) string {
		p := filepath.Join(tp.toolsDir, name)
		if isExecutable(p) {
			return p
		}
		miss("%s in %s (set %s or run the Makefile's tools target)", name, tp.toolsDir, ToolsDirEnv)
		return ""
	}
	tp.containerd = tool("containerd")
	tp.ctr = tool("ctr")
	tp.runcShim = tool(RuncShimBinary)

	host := func(name, pkg string) string {
		p, err := lookSystemPath(name)
		if err != nil {
			miss("%s (Debian package %s)", name, pkg)
		}
		return p
	}
	tp.mkfsXFS = host("mkfs.xfs", "xfsprogs")
	tp.mkfsExt4 = host("mkfs.ext4", "e2fsprogs")
	tp.losetup = host("losetup", "mount")
	tp.runc = host("runc", "runc")
	if !isExecutable(BusyboxPath) || !isStaticBusybox(BusyboxPath) {
		miss("%s, a static busybox (Debian package busybox-static)", BusyboxPath)
	}
	tp.ip, _ = lookSystemPath("ip") // also used to delete the bridges of dead envs
	if opts.CRI {
		host("ip", "iproute2")
		for _, p := range []string{"bridge", "host-local", "loopback"} {
			if !isExecutable(filepath.Join(CNIBinDir, p)) {
				miss("CNI plugin %s/%s (Debian package containernetworking-plugins)", CNIBinDir, p)
			}
		}
	}

	if len(missing) > 0 {
		testutil.Unavailable(t, "e2eenv: missing: %s", strings.Join(missing, "; "))
	}
	return tp
}

// RepoRoot walks up from the working directory (the test's package dir) to go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func lookSystemPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range filepath.SplitList(systemPath) {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// isStaticBusybox reports whether p is an ELF without a PT_INTERP program header, i.e. one that
// runs in an image without a dynamic loader.
func isStaticBusybox(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
