package checks

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/docker/go-units"
	"github.com/pelletier/go-toml/v2"
)

// CCIRuntimeType is the runtime type containerd maps the cci shim to.
const CCIRuntimeType = "io.containerd.cci.v2"

// ShimAnnotations are pod annotations the shim and its leaves read;
// containerd passes a pod annotation to the runtime only when the runtime's
// pod_annotations matches it.
var ShimAnnotations = []string{
	"coordinator.cci.io/hostpath-replacement",
	"coordinator.cci.io/hostpath-volumes",
	"resources.cci.io/containers",
	"shm.cci.io/size",
	"logs.cci.io/policies",
	"gpu.cci.io/count",
	"gpu.cci.io/model",
	"gpu.cci.io/driver-version",
	"throttle.cci.io/stdio-bps",
	"throttle.cci.io/rootfs-read-bps",
	"monitoring.cci.io/enable-pod-metrics",
	"monitoring.cci.io/metrics-port",
}

// Containerd is what the checks need of containerd's effective
// configuration, as `containerd config dump` prints it (imports merged,
// older versions migrated).
type Containerd struct {
	ConfigPath string
	Err        error // why the rest is empty
	Root       string
	State      string
	Address    string
	Runtimes   map[string]Runtime // CRI runtime handlers
	// Snapshotter is CRI's default snapshotter.
	Snapshotter string
	Disabled    []string
	Devmapper   struct {
		PoolName      string `toml:"pool_name"`
		RootPath      string `toml:"root_path"`
		BaseImageSize string `toml:"base_image_size"`
	}
	Blockfile struct {
		RootPath    string `toml:"root_path"`
		ScratchFile string `toml:"scratch_file"`
	}
}

// Runtime is one CRI runtime handler.
type Runtime struct {
	Type           string         `toml:"runtime_type"`
	Snapshotter    string         `toml:"snapshotter"`
	PodAnnotations []string       `toml:"pod_annotations"`
	Options        map[string]any `toml:"options"`
}

// dump is the part of the dump we decode.
type dump struct {
	Root  string `toml:"root"`
	State string `toml:"state"`
	GRPC  struct {
		Address string `toml:"address"`
	} `toml:"grpc"`
	DisabledPlugins []string       `toml:"disabled_plugins"`
	Plugins         map[string]any `toml:"plugins"`
}

// ParseContainerdDump reads `containerd config dump` output.
func ParseContainerdDump(text string) (Containerd, error) {
	var d dump
	if err := toml.Unmarshal([]byte(text), &d); err != nil {
		return Containerd{}, fmt.Errorf("parsing containerd config dump: %w", err)
	}
	c := Containerd{Root: d.Root, State: d.State, Address: d.GRPC.Address, Disabled: d.DisabledPlugins, Runtimes: map[string]Runtime{}}
	sub := func(v any, keys ...string) any {
		for _, k := range keys {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		}
		return v
	}
	// Re-encode a sub-table to decode it into a struct.
	into := func(v any, out any) error {
		if v == nil {
			return nil
		}
		b, err := toml.Marshal(v)
		if err != nil {
			return err
		}
		return toml.Unmarshal(b, out)
	}
	if err := into(sub(d.Plugins, "io.containerd.cri.v1.runtime", "containerd", "runtimes"), &c.Runtimes); err != nil {
		return c, fmt.Errorf("containerd CRI runtimes: %w", err)
	}
	if s, ok := sub(d.Plugins, "io.containerd.cri.v1.images", "snapshotter").(string); ok {
		c.Snapshotter = s
	}
	if err := into(d.Plugins["io.containerd.snapshotter.v1.devmapper"], &c.Devmapper); err != nil {
		return c, fmt.Errorf("containerd devmapper config: %w", err)
	}
	if err := into(d.Plugins["io.containerd.snapshotter.v1.blockfile"], &c.Blockfile); err != nil {
		return c, fmt.Errorf("containerd blockfile config: %w", err)
	}
	return c, nil
}

func (r Runner) loadContainerd() Containerd {
	return LoadContainerd(r.Host, r.Root, r.ContainerdConfig)
}

// LoadContainerd asks containerd (the binary in PATH) for its effective
// configuration from the config file at configPath (under root). The
// result's Err says why it could not.
func LoadContainerd(h Host, root, configPath string) Containerd {
	c := Containerd{ConfigPath: configPath}
	bin, err := h.LookPath("containerd")
	if err != nil {
		c.Err = fmt.Errorf("containerd is not in PATH (%v): its configuration cannot be read", err)
		return c
	}
	out, err := h.Output(bin, "--config", configPath, "config", "dump")
	if err != nil {
		c.Err = fmt.Errorf("containerd --config %s config dump: %v: %s", configPath, err, lastLine(out))
		return c
	}
	parsed, err := ParseContainerdDump(out)
	if err != nil {
		c.Err = err
		return c
	}
	parsed.ConfigPath = configPath
	if _, err := os.Stat(filepath.Join(root, configPath)); err != nil {
		parsed.ConfigPath += " (missing: containerd's defaults)"
	}
	return parsed
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// cciHandlers are the CRI handlers that run the cci shim, sorted.
func (c Containerd) cciHandlers() []string {
	var hs []string
	for name, rt := range c.Runtimes {
		if rt.Type == CCIRuntimeType {
			hs = append(hs, name)
		}
	}
	sort.Strings(hs)
	return hs
}

func (c Containerd) disabled(plugin string) bool {
	for _, d := range c.Disabled {
		if d == plugin {
			return true
		}
	}
	return false
}

// snapshotterOf is the snapshotter a CRI handler's pods get.
func (c Containerd) snapshotterOf(handler string) string {
	if s := c.Runtimes[handler].Snapshotter; s != "" {
		return s
	}
	if c.Snapshotter != "" {
		return c.Snapshotter
	}
	return "overlayfs"
}

const dropInFix = "install packaging/containerd/cci-runtime.toml as /etc/containerd/conf.d/cci-runtime.toml, make sure /etc/containerd/config.toml " +
	`exists with imports = ["/etc/containerd/conf.d/*.toml"] (without the file containerd imports nothing), and restart containerd`

func (r Runner) containerdRuntime(c Containerd) Result {
	res := Result{Name: "containerd-runtime"}
	if c.Err != nil {
		res.Status, res.Detail = Fail, c.Err.Error()
		return res
	}
	if c.disabled("io.containerd.grpc.v1.cri") || c.disabled("io.containerd.cri.v1.runtime") {
		res.Status, res.Detail, res.Fix = Fail, "containerd's CRI plugin is disabled in "+c.ConfigPath+": kubelet cannot run pods", "remove it from disabled_plugins"
		return res
	}
	hs := c.cciHandlers()
	if len(hs) == 0 {
		res.Status, res.Detail, res.Fix = Fail, fmt.Sprintf("containerd (config %s) registers no CRI runtime of type %s: pods with runtimeClassName cci fail", c.ConfigPath, CCIRuntimeType), dropInFix
		return res
	}
	var problems, fixes []string
	for _, h := range hs {
		rt := c.Runtimes[h]
		var missing []string
		for _, a := range ShimAnnotations {
			if !matchesAny(rt.PodAnnotations, a) {
				missing = append(missing, a)
			}
		}
		if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("handler %q: pod_annotations %q do not pass %s: the shim never sees them", h, rt.PodAnnotations, strings.Join(missing, ", ")))
			fixes = append(fixes, fmt.Sprintf(`set pod_annotations = ["*.cci.io/*", "cci.io/*"] for handler %q`, h))
		}
		if p, _ := rt.Options["ConfigPath"].(string); p != "" && filepath.Clean(p) != filepath.Clean(r.Source.Path) {
			problems = append(problems, fmt.Sprintf("handler %q hands the shims node config %s, this check read %s", h, p, r.Source.Path))
			fixes = append(fixes, "run cci-agent --config "+p+" check, or make both the same file")
		}
	}
	if len(problems) > 0 {
		res.Status, res.Detail, res.Fix = Fail, strings.Join(problems, "; "), strings.Join(fixes, "; ")
		return res
	}
	res.Status, res.Detail = OK, fmt.Sprintf("CRI handler %s -> %s (config %s)", strings.Join(hs, ", "), CCIRuntimeType, c.ConfigPath)
	if hs[0] != "cci" && len(hs) == 1 {
		res.Status = Warn
		res.Fix = `the packaged RuntimeClass names handler "cci"`
	}
	return res
}

func matchesAny(patterns []string, key string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, key); ok {
			return true
		}
	}
	return false
}

// containerdRoots compares containerd's root and state with the node
// config's: CRI keeps a pod's own files there, and the policy tells them
// from a tenant's hostPath by these prefixes.
func (r Runner) containerdRoots(c Containerd) Result {
	res := Result{Name: "containerd-roots"}
	if c.Err != nil {
		res.Status, res.Detail = Fail, c.Err.Error()
		return res
	}
	var bad, fixes []string
	for _, p := range []struct{ key, ours, theirs, theirKey string }{
		{"policy.containerd_root", r.Cfg.Policy.ContainerdRoot, c.Root, "root"},
		{"policy.containerd_state", r.Cfg.Policy.ContainerdState, c.State, "state"},
	} {
		if filepath.Clean(p.ours) != filepath.Clean(p.theirs) {
			bad = append(bad, fmt.Sprintf("containerd's %s is %s but %s is %s", p.theirKey, p.theirs, p.key, p.ours))
			fixes = append(fixes, fmt.Sprintf("%s = %q", p.key, p.theirs))
		}
	}
	if len(bad) > 0 {
		res.Status = Fail
		res.Detail = strings.Join(bad, "; ") + ": every CRI pod is refused (its hosts, hostname and resolv.conf mounts look like hostPath)"
		res.Fix = "set " + strings.Join(fixes, " and ") + " in " + r.Source.Path
		return res
	}
	res.Status, res.Detail = OK, fmt.Sprintf("root %s, state %s", c.Root, c.State)
	return res
}

// cciSnapshotter is the snapshotter of the cci handler's pods ("" if none).
func (c Containerd) cciSnapshotter() (handler, snapshotter string) {
	hs := c.cciHandlers()
	if len(hs) == 0 {
		return "", ""
	}
	return hs[0], c.snapshotterOf(hs[0])
}

func (r Runner) thinPool(c Containerd) Result {
	res := Result{Name: "thin-pool"}
	if c.Err != nil {
		res.Status, res.Detail = Skip, "containerd's configuration is unknown (see containerd-runtime)"
		return res
	}
	h, snap := c.cciSnapshotter()
	if snap != "devmapper" {
		res.Status = Skip
		if h == "" {
			res.Detail = "no cci runtime registered"
		} else {
			res.Detail = fmt.Sprintf("handler %q uses the %s snapshotter, not devmapper", h, snap)
		}
		if r.kata() && h != "" {
			res.Status = Warn
			res.Fix = `production pods get their rootfs from a devmapper thin pool (R7): snapshotter = "devmapper"`
		}
		return res
	}
	pool := c.Devmapper.PoolName
	switch {
	case c.disabled("io.containerd.snapshotter.v1.devmapper"):
		res.Status, res.Detail, res.Fix = Fail, "handler "+h+" uses devmapper, which containerd's disabled_plugins disables", "remove it from disabled_plugins"
		return res
	case pool == "":
		res.Status, res.Detail, res.Fix = Fail, "the devmapper snapshotter has no pool_name: it does not start", dropInFix
		return res
	}
	if _, err := os.Stat(r.path("/dev/mapper/control")); err != nil {
		res.Status = Fail
		res.Detail = fmt.Sprintf("handler %s uses devmapper pool %s, but this host has no device-mapper (/dev/mapper/control: %v): the snapshotter cannot run", h, pool, err)
		res.Fix = "modprobe dm_thin_pool (package dmsetup); development hosts use the blockfile snapshotter"
		return res
	}
	out, err := r.Host.ThinPoolStatus(pool)
	if err != nil {
		res.Status = Fail
		res.Detail = fmt.Sprintf("thin pool %s: dmsetup status: %v: %s", pool, err, lastLine(out))
		res.Fix = "create it: packaging/devmapper/thinpool.sh (cci-thinpool.service re-creates it at boot)"
		return res
	}
	st, err := ParseThinPoolStatus(out)
	if err != nil {
		res.Status, res.Detail = Fail, fmt.Sprintf("thin pool %s: %v", pool, err)
		return res
	}
	res.Detail = fmt.Sprintf("pool %s: data %s, metadata %s, %s", pool, st.Data, st.Metadata, st.Mode)
	switch {
	case st.Failed || st.NeedsCheck || st.Mode != "rw":
		res.Status = Fail
		res.Fix = "the pool is not writable: thin_check it (thin-provisioning-tools) and add space"
	case st.Data.Fraction() > 0.9 || st.Metadata.Fraction() > 0.9:
		res.Status, res.Fix = Warn, "the pool is over 90% full: extend its data or metadata device"
	default:
		res.Status = OK
	}
	return res
}

// rootfsSize compares rootfs.size_bytes with what the snapshotter gives.
func (r Runner) rootfsSize(c Containerd) Result {
	res := Result{Name: "rootfs-size"}
	want := r.Cfg.Rootfs.SizeBytes
	if c.Err != nil {
		res.Status, res.Detail = Skip, "containerd's configuration is unknown (see containerd-runtime)"
		return res
	}
	h, snap := c.cciSnapshotter()
	var got int64
	var from string
	switch snap {
	case "devmapper":
		n, err := units.RAMInBytes(c.Devmapper.BaseImageSize)
		if err != nil {
			res.Status, res.Detail = Fail, fmt.Sprintf("devmapper base_image_size %q: %v", c.Devmapper.BaseImageSize, err)
			return res
		}
		got, from = n, fmt.Sprintf("devmapper base_image_size %q", c.Devmapper.BaseImageSize)
	case "blockfile":
		root := c.Blockfile.RootPath
		if root == "" {
			root = filepath.Join(c.Root, "io.containerd.snapshotter.v1.blockfile")
		}
		scratch := filepath.Join(root, "scratch")
		fi, err := os.Stat(r.path(scratch))
		if err != nil && c.Blockfile.ScratchFile != "" {
			scratch = c.Blockfile.ScratchFile
			fi, err = os.Stat(r.path(scratch))
		}
		if err != nil {
			res.Status, res.Detail = Warn, fmt.Sprintf("blockfile scratch file: %v", err)
			res.Fix = "set scratch_file in containerd's blockfile config to an ext4 image of rootfs.size_bytes"
			return res
		}
		got, from = fi.Size(), "blockfile scratch file "+scratch
	case "":
		res.Status, res.Detail = Skip, "no cci runtime registered"
		return res
	default:
		res.Status = Warn
		res.Detail = fmt.Sprintf("handler %q uses the %s snapshotter: the rootfs is no block device, so neither rootfs.size_bytes nor the rootfs throttle (R8) applies", h, snap)
		res.Fix = `use snapshotter = "devmapper" (or "blockfile" on development hosts)`
		return res
	}
	if got != want {
		res.Status = Fail
		res.Detail = fmt.Sprintf("rootfs.size_bytes is %d (%s) but the %s gives %d (%s): pods get the snapshotter's size, not the configured one",
			want, units.BytesSize(float64(want)), from, got, units.BytesSize(float64(got)))
		res.Fix = "make rootfs.size_bytes in " + r.Source.Path + " and the snapshotter agree"
		return res
	}
	res.Status, res.Detail = OK, fmt.Sprintf("%d bytes (%s) = %s", want, units.BytesSize(float64(want)), from)
	return res
}
