package podmetrics

import (
	"fmt"
	"path/filepath"
	"strings"
)

// CgroupGroup turns an OCI linux.cgroupsPath into the path below a hierarchy's
// root: "/a/b" as it is, systemd's "slice:prefix:name" as runc expands it
// ("a-b.slice:cri:id" is "/a.slice/a-b.slice/cri-id.scope"). A path that is
// relative, has ".." or is not clean is refused: the figures must come from
// the cgroup the container runs in, never from one a path climbs to.
func CgroupGroup(cgroupsPath string) (string, error) {
	if cgroupsPath == "" {
		return "", fmt.Errorf("no cgroups path")
	}
	p := cgroupsPath
	if !strings.HasPrefix(p, "/") {
		parts := strings.Split(p, ":")
		if len(parts) != 3 {
			return "", fmt.Errorf("cgroups path %q: want an absolute path or slice:prefix:name", cgroupsPath)
		}
		slice, err := expandSlice(parts[0])
		if err != nil {
			return "", fmt.Errorf("cgroups path %q: %w", cgroupsPath, err)
		}
		name := parts[2]
		if parts[1] != "" {
			name = parts[1] + "-" + name
		}
		if !strings.HasSuffix(name, ".slice") {
			name += ".scope"
		}
		if strings.Contains(name, "/") {
			return "", fmt.Errorf("cgroups path %q: unit name has a /", cgroupsPath)
		}
		p = slice + "/" + name
	}
	if filepath.Clean(p) != p || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") {
		return "", fmt.Errorf("cgroups path %q is not clean", cgroupsPath)
	}
	return p, nil
}

// expandSlice expands a systemd slice name into its path, as runc does:
// "a-b-c.slice" is "/a.slice/a-b.slice/a-b-c.slice"; "" is "/system.slice".
func expandSlice(slice string) (string, error) {
	switch slice {
	case "":
		slice = "system.slice"
	case "-.slice":
		return "", nil
	}
	base, ok := strings.CutSuffix(slice, ".slice")
	if !ok || base == "" || strings.Contains(base, "/") || strings.HasPrefix(base, "-") ||
		strings.HasSuffix(base, "-") || strings.Contains(base, "--") {
		return "", fmt.Errorf("invalid slice name %q", slice)
	}
	var b strings.Builder
	prefix := ""
	for _, comp := range strings.Split(base, "-") {
		b.WriteString("/" + prefix + comp + ".slice")
		prefix += comp + "-"
	}
	return b.String(), nil
}
