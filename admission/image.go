package admission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/distribution/reference"

	"github.com/cci-shim/cci-shim/sandbox"
)

// AnnotationImageReplacement is R26's pod annotation: a JSON list of
// {"repositoryPrefix", "replaceWith"}.
const AnnotationImageReplacement = "coordinator.cci.io/image-replacement"

// maxImageReplacements bounds the list; a platform has a handful of mirrors.
const maxImageReplacements = 64

const imageReplacementFormat = `a JSON list of {"repositoryPrefix": <the part of an image name before its last "/", or "" for names without "/">, ` +
	`"replaceWith": <an image name prefix>}; both follow the image name rules and do not end with "/", ` +
	`replaceWith differs from repositoryPrefix, and no two entries share a repositoryPrefix`

// ImageReplacement is one entry of coordinator.cci.io/image-replacement.
type ImageReplacement struct {
	// RepositoryPrefix is compared with the part of an image name before its
	// last "/"; empty matches names without "/".
	RepositoryPrefix string
	// ReplaceWith replaces the matched part (or, for an empty prefix, is put
	// in front of the name with a "/").
	ReplaceWith string
}

type imageReplacementJSON struct {
	RepositoryPrefix *string `json:"repositoryPrefix"`
	ReplaceWith      *string `json:"replaceWith"`
}

func imageReplacementError(value, problem string) error {
	if len(value) > 200 {
		value = value[:200] + "..."
	}
	return &sandbox.PolicyError{Field: "annotation " + AnnotationImageReplacement, Value: value,
		Reason: problem, Allowed: imageReplacementFormat}
}

// ParseImageReplacement parses coordinator.cci.io/image-replacement (R26).
// Errors name the entry (its index from 0 and its repositoryPrefix) and the
// rule it breaks: malformed JSON or unknown fields, a missing
// repositoryPrefix or replaceWith, an empty replaceWith, a field ending with
// "/" or not following the image name rules, replaceWith equal to
// repositoryPrefix, a repositoryPrefix shared by two entries, more than 64
// entries.
func ParseImageReplacement(v string) ([]ImageReplacement, error) {
	bad := func(problem string) error { return imageReplacementError(v, problem) }
	dec := json.NewDecoder(bytes.NewReader([]byte(v)))
	dec.DisallowUnknownFields()
	var list []imageReplacementJSON
	if err := dec.Decode(&list); err != nil {
		return nil, bad(err.Error())
	}
	if dec.More() {
		return nil, bad("trailing data after the JSON list")
	}
	if len(list) > maxImageReplacements {
		return nil, bad(fmt.Sprintf("%d entries; at most %d", len(list), maxImageReplacements))
	}
	seen := map[string]int{}
	out := make([]ImageReplacement, 0, len(list))
	for i, e := range list {
		if e.RepositoryPrefix == nil {
			return nil, bad(fmt.Sprintf(`entry %d: repositoryPrefix is missing (use "" for image names without "/")`, i))
		}
		r := ImageReplacement{RepositoryPrefix: *e.RepositoryPrefix}
		entry := fmt.Sprintf("entry %d (repositoryPrefix %q)", i, r.RepositoryPrefix)
		if e.ReplaceWith == nil || *e.ReplaceWith == "" {
			return nil, bad(entry + ": replaceWith is missing or empty")
		}
		r.ReplaceWith = *e.ReplaceWith
		if r.RepositoryPrefix != "" {
			if err := checkPrefix(r.RepositoryPrefix); err != nil {
				return nil, bad(fmt.Sprintf("%s: repositoryPrefix %v", entry, err))
			}
		}
		if err := checkPrefix(r.ReplaceWith); err != nil {
			return nil, bad(fmt.Sprintf("%s: replaceWith %v", entry, err))
		}
		if r.ReplaceWith == r.RepositoryPrefix {
			return nil, bad(fmt.Sprintf("%s: replaceWith %q equals repositoryPrefix", entry, r.ReplaceWith))
		}
		if j, dup := seen[r.RepositoryPrefix]; dup {
			return nil, bad(fmt.Sprintf("%s: repositoryPrefix is already used by entry %d", entry, j))
		}
		seen[r.RepositoryPrefix] = i
		out = append(out, r)
	}
	return out, nil
}

// checkPrefix checks a non-empty image name prefix: it must not end with "/"
// and, followed by "/" and one more path component, must be an image name
// (distribution's reference grammar: an optional registry host[:port], then
// lowercase path components of letters, digits and the separators ".", "_",
// "__", "-").
func checkPrefix(p string) error {
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("%q ends with \"/\"", p)
	}
	if _, err := reference.WithName(p + "/x"); err != nil {
		return fmt.Errorf("%q does not follow the image name rules (an optional registry host[:port], then lowercase "+
			"path components of letters, digits and the separators . _ __ -, separated by \"/\"): %w", p, err)
	}
	return nil
}

// ImageRewriteError says that a replacement would produce an invalid image
// reference (for example one longer than the name length limit).
type ImageRewriteError struct {
	Image, Result string
	Rule          ImageReplacement
	Err           error
}

func (e *ImageRewriteError) Error() string {
	return fmt.Sprintf("image %q: annotation %s entry with repositoryPrefix %q would make it %q, which is not a valid image reference: %v",
		e.Image, AnnotationImageReplacement, e.Rule.RepositoryPrefix, e.Result, e.Err)
}

func (e *ImageRewriteError) Unwrap() error { return e.Err }

// ReplaceImage applies R26 to one image reference. The name is split at its
// last "/" (a registry port such as host:5000/x stays in the prefix); the
// rule whose repositoryPrefix equals the part before it, or the rule with an
// empty prefix for a name without "/", replaces that part. Tag and digest
// are kept as written. At most one rule applies: prefixes are unique and a
// name has one part before its last "/", so the order of rules does not
// matter. An image that is not a valid reference, or that no rule matches,
// is returned unchanged with ok false.
func ReplaceImage(image string, rules []ImageReplacement) (out string, ok bool, err error) {
	ref, err := reference.Parse(image)
	if err != nil {
		return image, false, nil // not ours to judge: the kubelet reports it
	}
	named, isNamed := ref.(reference.Named)
	if !isNamed || !strings.HasPrefix(image, named.Name()) {
		return image, false, nil
	}
	name, rest := named.Name(), image[len(named.Name()):]
	prefix, last := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		prefix, last = name[:i], name[i+1:]
	}
	for _, r := range rules {
		if r.RepositoryPrefix != prefix {
			continue
		}
		out = r.ReplaceWith + "/" + last + rest
		if _, err := reference.Parse(out); err != nil {
			return image, false, &ImageRewriteError{Image: image, Result: out, Rule: r, Err: err}
		}
		return out, true, nil
	}
	return image, false, nil
}
