package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// PolicyType is a hostPath replacement policy (R4).
type PolicyType string

const (
	PolicyRemove            PolicyType = "remove"
	PolicyReplaceByLocalDir PolicyType = "replaceByLocalDir"
	PolicyReplaceByEmptyDir PolicyType = "replaceByEmptyDir"
)

// Replacement is one parsed entry of coordinator.cci.io/hostpath-replacement.
type Replacement struct {
	Name      string // volume name or "*"
	Policy    PolicyType
	SizeLimit int64 // bytes; 0 = not given
	Memory    bool  // emptyDir medium Memory: tmpfs
}

type sizeJSON struct {
	SizeLimit string `json:"sizeLimit"`
	Medium    string `json:"medium"`
}

type replacementJSON struct {
	Name       string    `json:"name"`
	PolicyType string    `json:"policyType"`
	LocalDir   *sizeJSON `json:"localDir"`
	EmptyDir   *sizeJSON `json:"emptyDir"`
}

// ParseHostPathReplacement parses the replacement annotation. Errors name
// the entry and the problem: malformed JSON, unknown fields, an empty or
// repeated name, an unknown policyType, a bad sizeLimit, a medium other than
// "" or "Memory", or a medium on localDir.
func ParseHostPathReplacement(v string) ([]Replacement, error) {
	bad := func(problem string) error { return annotationError(AnnotationHostPathReplacement, v, problem) }
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.DisallowUnknownFields()
	var list []replacementJSON
	if err := dec.Decode(&list); err != nil {
		return nil, bad(err.Error())
	}
	if dec.More() {
		return nil, bad("trailing data after the JSON list")
	}
	seen := map[string]bool{}
	out := make([]Replacement, 0, len(list))
	for i, e := range list {
		if e.Name == "" || seen[e.Name] {
			return nil, bad(fmt.Sprintf("entry %d: name %q is empty or repeated", i, e.Name))
		}
		seen[e.Name] = true
		r := Replacement{Name: e.Name, Policy: PolicyType(e.PolicyType)}
		var sz *sizeJSON
		switch r.Policy {
		case PolicyRemove:
		case PolicyReplaceByLocalDir:
			sz = e.LocalDir
			if sz != nil && sz.Medium != "" {
				return nil, bad(fmt.Sprintf("entry %q: localDir has no medium", e.Name))
			}
		case PolicyReplaceByEmptyDir:
			sz = e.EmptyDir
			if sz != nil && sz.Medium != "" && sz.Medium != "Memory" {
				return nil, bad(fmt.Sprintf("entry %q: emptyDir medium %q is not \"\" or \"Memory\"", e.Name, sz.Medium))
			}
			r.Memory = sz != nil && sz.Medium == "Memory"
		default:
			return nil, bad(fmt.Sprintf("entry %q: unknown policyType %q (want remove, replaceByLocalDir or replaceByEmptyDir)", e.Name, e.PolicyType))
		}
		if sz != nil && sz.SizeLimit != "" {
			n, err := ParseBytes(sz.SizeLimit)
			if err != nil || n <= 0 {
				return nil, bad(fmt.Sprintf("entry %q: sizeLimit %q is not a positive memory quantity", e.Name, sz.SizeLimit))
			}
			r.SizeLimit = n
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseHostPathVolumes parses coordinator.cci.io/hostpath-volumes, a JSON
// object mapping hostPath volume names to their host paths.
func ParseHostPathVolumes(v string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return nil, annotationError(AnnotationHostPathVolumes, v, err.Error())
	}
	for name, p := range m {
		if name == "" || !filepath.IsAbs(p) {
			return nil, annotationError(AnnotationHostPathVolumes, v, fmt.Sprintf("volume %q: want a name and an absolute path, got %q", name, p))
		}
	}
	return m, nil
}

// isBind reports whether m bind-mounts a host path.
func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

func under(path, dir string) bool {
	return dir != "" && dir != "/" && (path == dir || strings.HasPrefix(path, dir+"/"))
}

// matchReplacement finds the entry for a hostPath source: an entry named
// after a volume of the hostpath-volumes mapping whose path is the source or
// contains it (subPath), else an entry named after the source's last path
// element, else "*". key names the pod-private directory, shared by every
// container that mounts the same volume; it is a hash of the volume name or
// source path, never the tenant's string itself.
func matchReplacement(src string, repl []Replacement, vols map[string]string) (r Replacement, key string, ok bool) {
	byName := func(n string) (Replacement, bool) {
		i := slices.IndexFunc(repl, func(r Replacement) bool { return r.Name == n })
		if i < 0 {
			return Replacement{}, false
		}
		return repl[i], true
	}
	// The volume whose path is the longest prefix of the source wins (a
	// volume inside another volume's path is its own); equal paths go by name.
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range vols {
			if !yield(n) {
				return
			}
		}
	})
	best, bestLen := "", -1
	for _, n := range names {
		p := filepath.Clean(vols[n])
		if !under(src, p) && p != "/" {
			continue
		}
		if _, ok := byName(n); ok && len(p) > bestLen {
			best, bestLen = n, len(p)
		}
	}
	if best != "" {
		r, _ := byName(best)
		return r, "vol-" + HashKey("volume", best), true
	}
	base := filepath.Base(src)
	if r, ok := byName(base); ok {
		return r, "vol-" + HashKey("volume", base), true
	}
	if r, ok := byName("*"); ok {
		return r, "path-" + HashKey("path", src), true
	}
	return Replacement{}, "", false
}

// hostPathAnnotations parses the pod's R4 annotations.
func hostPathAnnotations(pod *Pod) ([]Replacement, map[string]string, error) {
	var repl []Replacement
	var vols map[string]string
	var err error
	if v, ok := pod.Annotations[AnnotationHostPathReplacement]; ok {
		if repl, err = ParseHostPathReplacement(v); err != nil {
			return nil, nil, err
		}
	}
	if v, ok := pod.Annotations[AnnotationHostPathVolumes]; ok {
		if vols, err = ParseHostPathVolumes(v); err != nil {
			return nil, nil, err
		}
	}
	return repl, vols, nil
}

// replaceHostPath applies R4 to one hostPath bind (src clean): it is removed
// (keep false) or replaced by a bind of a pod-private directory, else
// refused. why, if set, says why src is not a platform source.
func replaceHostPath(m specs.Mount, src, why string, pod *Pod, cfg *Config, mp *mountPlan, repl []Replacement, vols map[string]string, podMemory int64) (bool, specs.Mount, error) {
	r, key, ok := matchReplacement(src, repl, vols)
	if !ok {
		reason := "mounted at " + m.Destination
		if why != "" {
			reason += "; " + why
		}
		return false, m, &PolicyError{Container: pod.Name(), Field: "hostPath volume", Value: clip(src), Reason: reason,
			Allowed: "hostPath volumes replaced by annotation " + AnnotationHostPathReplacement +
				" (policyType remove, replaceByLocalDir or replaceByEmptyDir)"}
	}
	if r.Policy == PolicyRemove {
		return false, m, nil
	}
	d := Dir{Path: filepath.Join(cfg.PodDir, "volumes", key), Size: r.SizeLimit, Memory: r.Memory}
	switch {
	case d.Memory && d.Size == 0:
		d.Size = podMemory
	case d.Size == 0:
		d.Size = cfg.DefaultVolumeSize
	}
	if d.Memory && podMemory > 0 && d.Size > podMemory {
		return false, m, &PolicyError{Container: pod.Name(), Field: "emptyDir sizeLimit", Value: fmtBytes(d.Size),
			Reason: "replacement for hostPath " + clip(src), Allowed: "a Memory emptyDir of at most the pod memory " + fmtBytes(podMemory)}
	}
	if d.Size <= 0 {
		return false, m, &PolicyError{Container: pod.Name(), Field: "sizeLimit", Value: "unset",
			Reason: "replacement for hostPath " + clip(src), Allowed: "a positive sizeLimit"}
	}
	if !d.Memory {
		d.Image = filepath.Join(cfg.PodDir, "images", key+".img")
	}
	if !slices.ContainsFunc(mp.dirs, func(x Dir) bool { return x.Path == d.Path }) {
		mp.dirs = append(mp.dirs, d)
	}
	m.Source, m.Type = d.Path, "bind"
	m.Options = slices.Clone(m.Options)
	if !slices.Contains(m.Options, "rbind") && !slices.Contains(m.Options, "bind") {
		m.Options = append(m.Options, "rbind")
	}
	return true, m, nil
}
