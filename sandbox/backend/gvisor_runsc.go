package backend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/internal/lazyre"
)

// gvisorDir is where the adapter writes the runsc wrapper or runsc.toml.
func gvisorDir(stateDir string) string { return filepath.Join(stateDir, "gvisor") }

// RunscFlags are the runsc global flags the node config asks for, in a
// fixed order. --overlay2=none keeps the rootfs on the pod's own block
// device (R7): newer runsc default to an overlay whose upper layer lives in
// sandbox memory or in a file the throttle cannot see.
func RunscFlags(g config.GVisor) []string {
	flags := []string{
		"--platform=" + g.Platform,
		"--network=" + g.Network,
		"--overlay2=none",
		// Volumes (the log volume, R15) are shared with the host: the
		// collector reads what the pod writes as it writes it.
		"--file-access-mounts=shared",
	}
	if g.NVProxy {
		flags = append(flags, "--nvproxy")
	}
	if g.DebugLogDir != "" {
		flags = append(flags, "--debug", "--debug-log="+strings.TrimSuffix(g.DebugLogDir, "/")+"/")
	}
	return flags
}

// runscWrapper is the OCI runtime binary handed to the runc shim: cci-runsc
// with runsc and the node's flags, then whatever the shim passes (--root,
// --log, the subcommand).
func runscWrapper(helper, runsc string, flags []string) []byte {
	var b bytes.Buffer
	b.WriteString("#!/bin/sh\n# Written by containerd-shim-cci-v2 (gvisor backend): runsc with the node's flags, through cci-runsc.\nexec")
	for _, a := range append(append([]string{helper, runsc}, flags...), "--") {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString(" \"$@\"\n")
	return b.Bytes()
}

// findHelper resolves cci-runsc: an absolute path as it is, a name beside
// the running binary (containerd-shim-cci-v2, cci-agent), then in PATH.
func findHelper(name string) (string, error) {
	if filepath.IsAbs(name) {
		return exec.LookPath(name)
	}
	if self, err := os.Executable(); err == nil {
		if p, err := exec.LookPath(filepath.Join(filepath.Dir(self), name)); err == nil {
			return p, nil
		}
	}
	return exec.LookPath(name)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// runscTOML is the configuration gVisor's shim reads (ConfigPath): the
// runsc binary, its root and the node's flags under [runsc_config].
func runscTOML(runsc, root string, flags []string) []byte {
	doc := struct {
		BinaryName  string            `toml:"binary_name"`
		Root        string            `toml:"root"`
		RunscConfig map[string]string `toml:"runsc_config"`
	}{BinaryName: runsc, Root: root, RunscConfig: map[string]string{}}
	for _, f := range flags {
		k, v, ok := strings.Cut(strings.TrimPrefix(f, "--"), "=")
		if !ok {
			v = "true"
		}
		doc.RunscConfig[k] = v
	}
	out, err := toml.Marshal(doc)
	if err != nil {
		panic(fmt.Sprintf("encoding runsc.toml: %v", err)) // strings only: cannot fail
	}
	return append([]byte("# Written by containerd-shim-cci-v2 (gvisor backend) for containerd-shim-runsc-v1.\n"), out...)
}

// writeContentAddressed writes data to dir/<prefix><hash><suffix> unless a
// file of that name exists already, and returns the path. The name follows
// the content, so a file in use is never rewritten and concurrent writers
// of the same content agree.
func writeContentAddressed(dir, prefix, suffix string, data []byte, mode os.FileMode) (string, error) {
	sum := sha256.Sum256(data)
	path := filepath.Join(dir, prefix+hex.EncodeToString(sum[:6])+suffix)
	if existing, err := os.ReadFile(path); err == nil && bytes.Equal(existing, data) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

// runscVersion is runsc's release date, YYYYMMDD (gVisor versions are
// release dates: "release-20250317.0", Debian's "0.0~20221219.0").
type runscVersion int

var runscVersionRE = lazyre.New(`runsc version \S*?(\d{8})(?:\.\d+)?\b`)

// ParseRunscVersion reads the release date out of `runsc --version`.
func ParseRunscVersion(out string) (int, error) {
	m := runscVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("runsc --version printed %q: no release date in it", firstLine(out))
	}
	var v int
	fmt.Sscanf(m[1], "%d", &v)
	return v, nil
}

func readRunscVersion(runsc string) (runscVersion, error) {
	v, err := RunscVersion(runsc)
	return runscVersion(v), err
}

// RunscVersion is the release date (YYYYMMDD) of the runsc binary at path:
// from `runsc --version`, or for a runsc built with go install (which says
// VERSION_MISSING) from the gvisor.dev/gvisor module version in its build
// information (v0.0.0-YYYYMMDDhhmmss-commit).
func RunscVersion(path string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("running %s --version: %w: %s", path, err, firstLine(string(out)))
	}
	v, verr := ParseRunscVersion(string(out))
	if verr == nil {
		return v, nil
	}
	if bi, err := buildinfo.ReadFile(path); err == nil {
		mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
		for _, m := range mods {
			if m.Path == "gvisor.dev/gvisor" {
				if p := strings.Split(m.Version, "-"); len(p) == 3 && len(p[1]) == 14 {
					if v, err := strconv.Atoi(p[1][:8]); err == nil {
						return v, nil
					}
				}
			}
		}
	}
	return 0, verr
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
