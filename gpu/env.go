package gpu

import (
	"errors"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Where the driver's user-space files appear in every GPU container (R12).
const (
	ContainerLibDir = "/usr/local/nvidia/lib64"
	ContainerBinDir = "/usr/local/nvidia/bin"
	// DefaultPath is the PATH assumed when a process has none, so that appending
	// ours does not leave the container without /bin.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// InjectEnv appends ContainerLibDir to LD_LIBRARY_PATH and ContainerBinDir to PATH
// in proc.Env, keeping the user's entries first. Pure and idempotent: the shim
// applies it to the container's process and to every Exec process spec.
// Duplicate entries and empty entries (which mean "the current directory") are
// dropped; when a variable occurs more than once, the first occurrence (the one
// getenv(3) returns) is kept and merged, later ones are removed.
func InjectEnv(proc *specs.Process) {
	if proc == nil {
		return
	}
	proc.Env = mergeEnvList(proc.Env, "LD_LIBRARY_PATH", "", ContainerLibDir)
	proc.Env = mergeEnvList(proc.Env, "PATH", DefaultPath, ContainerBinDir)
}

// mergeEnvList sets key in env to MergePathList(current or def, add).
func mergeEnvList(env []string, key, def, add string) []string {
	out := make([]string, 0, len(env)+1)
	done := false
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k != key {
			out = append(out, kv)
			continue
		}
		if done {
			continue
		}
		out = append(out, key+"="+MergePathList(v, add))
		done = true
	}
	if !done {
		out = append(out, key+"="+MergePathList(def, add))
	}
	return out
}

// MergePathList appends add to the colon-separated list cur unless present,
// dropping empty and duplicate entries.
func MergePathList(cur, add string) string {
	var parts []string
	seen := map[string]bool{}
	for _, p := range append(strings.Split(cur, ":"), add) {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		parts = append(parts, p)
	}
	return strings.Join(parts, ":")
}

// ApplyLibraries bind-mounts drv's directories read-only at ContainerLibDir and
// ContainerBinDir (replacing mounts the spec already has there) and injects the
// environment into spec.Process.
func ApplyLibraries(spec *specs.Spec, drv Driver) error {
	if spec == nil {
		return errors.New("applying gpu libraries: nil spec")
	}
	if drv.LibDir == "" || drv.BinDir == "" {
		return errors.New("applying gpu libraries: driver needs lib_dir and bin_dir")
	}
	ours := []specs.Mount{
		{Destination: ContainerLibDir, Type: "bind", Source: drv.LibDir, Options: []string{"bind", "ro", "nosuid", "nodev"}},
		{Destination: ContainerBinDir, Type: "bind", Source: drv.BinDir, Options: []string{"bind", "ro", "nosuid", "nodev"}},
	}
	kept := spec.Mounts[:0:0]
	for _, m := range spec.Mounts {
		if m.Destination != ContainerLibDir && m.Destination != ContainerBinDir {
			kept = append(kept, m)
		}
	}
	spec.Mounts = append(kept, ours...)
	InjectEnv(spec.Process)
	return nil
}
