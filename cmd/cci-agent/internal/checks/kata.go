package checks

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/cci-shim/cci-shim/iothrottle"
	"github.com/cci-shim/cci-shim/sandbox/backend"
)

// kataAnnotationPrefix is what Kata strips before matching an annotation
// against enable_annotations.
const kataAnnotationPrefix = "io.katacontainers.config.hypervisor."

// kataAnnotations are the hypervisor annotations the Kata adapter writes.
var kataAnnotations = []string{backend.KataAnnotationVCPUs, backend.KataAnnotationMemory}

// kataConfig is Kata's configuration.toml, as far as cci relies on it.
type kataConfig struct {
	Path       string
	Err        error  // unreadable or not TOML
	Hypervisor string // the one [hypervisor.<name>] table
	HV         map[string]any
	Runtime    map[string]any
}

func (r Runner) loadKata() kataConfig {
	p := r.Cfg.Backend.ConfigPath
	kc := kataConfig{Path: p}
	if p == "" {
		kc.Err = errors.New("backend.config_path is empty: Kata would use its default configuration, which does not allow the annotations cci sizes VMs with")
		return kc
	}
	data, err := r.readFile(p)
	if err != nil {
		kc.Err = err
		return kc
	}
	var doc struct {
		Hypervisor map[string]map[string]any `toml:"hypervisor"`
		Runtime    map[string]any            `toml:"runtime"`
	}
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			kc.Err = fmt.Errorf("%s:%d:%d: %s", p, row, col, strings.TrimPrefix(de.Error(), "toml: "))
		} else {
			kc.Err = fmt.Errorf("%s: %w", p, err)
		}
		return kc
	}
	var names []string
	for name := range doc.Hypervisor {
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) != 1 {
		kc.Err = fmt.Errorf("%s: want exactly one [hypervisor.<name>] table, found %d %v", p, len(names), names)
		return kc
	}
	kc.Hypervisor, kc.HV, kc.Runtime = names[0], doc.Hypervisor[names[0]], doc.Runtime
	return kc
}

const kataFix = "copy Kata's configuration-clh.toml to backend.config_path and merge packaging/kata/configuration-cci.toml.snippet into it"

func (r Runner) kataConfig(kc kataConfig) Result {
	res := Result{Name: "kata-config"}
	if kc.Err != nil {
		res.Status, res.Detail, res.Fix = Fail, kc.Err.Error(), kataFix
		if errors.Is(kc.Err, os.ErrNotExist) {
			res.Detail = fmt.Sprintf("backend.config_path %s: %v", kc.Path, kc.Err)
		}
		return res
	}
	if v, _ := kc.Runtime["sandbox_cgroup_only"].(bool); !v {
		res.Status = Fail
		res.Detail = fmt.Sprintf("%s: [runtime] sandbox_cgroup_only is %v: the VMM's I/O escapes the sandbox cgroup the shim throttles (R8) and sizes", kc.Path, kc.Runtime["sandbox_cgroup_only"])
		res.Fix = "set sandbox_cgroup_only = true in [runtime]"
		return res
	}
	res.Status, res.Detail = OK, fmt.Sprintf("%s: hypervisor %s, sandbox_cgroup_only = true", kc.Path, kc.Hypervisor)
	return res
}

// kataAnnotations checks enable_annotations as Kata reads it: a list of
// regular expressions, one of which must match the annotation's name after
// the hypervisor prefix.
func (r Runner) kataAnnotations(kc kataConfig) Result {
	res := Result{Name: "kata-annotations"}
	if kc.Err != nil {
		res.Status, res.Detail = Skip, "no usable Kata configuration (see kata-config)"
		return res
	}
	raw, ok := kc.HV["enable_annotations"]
	list, isList := raw.([]any)
	if !ok || !isList {
		res.Status = Fail
		res.Detail = fmt.Sprintf("%s: [hypervisor.%s] enable_annotations is %s: Kata refuses every pod cci sizes", kc.Path, kc.Hypervisor, describe(raw, ok))
		res.Fix = `set enable_annotations = ["default_vcpus", "default_memory"]`
		return res
	}
	var missing []string
	for _, a := range kataAnnotations {
		name := strings.TrimPrefix(a, kataAnnotationPrefix)
		if !kataAllows(list, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		res.Status = Fail
		res.Detail = fmt.Sprintf("%s: [hypervisor.%s] enable_annotations %v does not allow %s: Kata refuses every pod cci sizes", kc.Path, kc.Hypervisor, list, strings.Join(missing, ", "))
		res.Fix = "add " + strings.Join(quoted(missing), ", ") + " to enable_annotations"
		return res
	}
	res.Status, res.Detail = OK, fmt.Sprintf("enable_annotations allows %s", strings.Join(kataAnnotations, ", "))
	return res
}

// kataAllows is Kata's own test: regexp.MatchString of each entry.
func kataAllows(list []any, name string) bool {
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			continue
		}
		if m, err := regexp.MatchString(s, name); err == nil && m {
			return true
		}
	}
	return false
}

func describe(v any, present bool) string {
	if !present {
		return "not set"
	}
	return fmt.Sprintf("%v (%T, not a list)", v, v)
}

func quoted(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

// kataDiskLimiter checks the VMM's own rootfs limiter against the node's
// limits (R8): Cloud Hypervisor honours it; QEMU does not.
func (r Runner) kataDiskLimiter(kc kataConfig) Result {
	res := Result{Name: "kata-disk-limiter"}
	if kc.Err != nil {
		res.Status, res.Detail = Skip, "no usable Kata configuration (see kata-config)"
		return res
	}
	if kc.Hypervisor != "clh" {
		res.Status = Warn
		res.Detail = fmt.Sprintf("hypervisor %s does not honour Kata's disk rate limiter: only the sandbox cgroup throttles the rootfs (R8)", kc.Hypervisor)
		res.Fix = "use Cloud Hypervisor ([hypervisor.clh]) for a limiter inside the VMM too"
		return res
	}
	var want map[string]int64
	text := iothrottle.KataDiskRateLimiterConfig(r.Cfg.Throttle.NodeLimits().Rootfs)
	if err := toml.Unmarshal([]byte(text), &want); err != nil {
		res.Status, res.Detail = Fail, "rendering the expected limiter: "+err.Error()
		return res
	}
	var bad []string
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		got, ok := kc.HV[k].(int64)
		if !ok || got != want[k] {
			bad = append(bad, fmt.Sprintf("%s = %v, want %d", k, orUnset(kc.HV[k]), want[k]))
		}
	}
	if len(bad) > 0 {
		res.Status = Fail
		res.Detail = fmt.Sprintf("%s [hypervisor.clh]: %s (the sums of the node's per-direction rootfs limits)", kc.Path, strings.Join(bad, "; "))
		res.Fix = "set them as packaging/kata/configuration-cci.toml.snippet does for the node's [throttle]"
		return res
	}
	res.Status, res.Detail = OK, strings.ReplaceAll(strings.TrimSpace(text), "\n", ", ")
	return res
}

func orUnset(v any) any {
	if v == nil {
		return "unset"
	}
	return v
}

// hypervisor checks the files Kata starts a VM from.
func (r Runner) hypervisor(kc kataConfig) Result {
	res := Result{Name: "hypervisor"}
	if kc.Err != nil {
		res.Status, res.Detail = Skip, "no usable Kata configuration (see kata-config)"
		return res
	}
	var found, problems []string
	for _, key := range []string{"path", "kernel", "image", "initrd"} {
		p, _ := kc.HV[key].(string)
		if p == "" {
			if key == "path" || key == "kernel" {
				problems = append(problems, key+" is not set")
			}
			continue
		}
		fi, err := os.Stat(r.path(p))
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s %s: %v", key, p, err))
		case key == "path" && fi.Mode()&0o111 == 0:
			problems = append(problems, fmt.Sprintf("path %s is not executable", p))
		default:
			found = append(found, p)
		}
	}
	if _, hasImage := kc.HV["image"]; !hasImage {
		if _, hasInitrd := kc.HV["initrd"]; !hasInitrd {
			problems = append(problems, "neither image nor initrd is set")
		}
	}
	if len(problems) > 0 {
		res.Status = Fail
		res.Detail = fmt.Sprintf("%s [hypervisor.%s]: %s", kc.Path, kc.Hypervisor, strings.Join(problems, "; "))
		res.Fix = "install Kata Containers with " + kc.Hypervisor + ", or fix the paths"
		return res
	}
	res.Status, res.Detail = OK, strings.Join(found, ", ")
	return res
}
