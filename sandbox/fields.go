package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The spec allow-list (R24) starts from the fields: every field of a spec
// that is set must be one the platform knows. knownFields lists them, each
// either a node (a struct, pointer or list of structs whose own fields are
// checked one by one) or a leaf (its whole value is accepted here, and
// checked by the rule that owns it: mounts, devices, namespaces, ...).
// A field that is set and not listed is refused — a runtime-spec field
// this code does not know (a newer runtime-spec, or a platform section such
// as windows or vm) never reaches the backend. Fields the platform refuses
// outright are simply absent: hooks, linux.uidMappings, linux.netDevices,
// linux.intelRdt, linux.memoryPolicy, linux.timeOffsets, linux.resources.rdma,
// seccomp listeners, the other platforms' sections.
//
// Lists are written "name[]" and maps "name{}".
var knownFields = map[string]fieldKind{
	"ociVersion":  leaf,
	"hostname":    leaf,
	"domainname":  leaf,
	"annotations": leaf, // checkAnnotations

	"process":                                  node,
	"process.terminal":                         leaf,
	"process.consoleSize":                      leaf,
	"process.user":                             node, // exec: no widening (CheckExec)
	"process.user.uid":                         leaf,
	"process.user.gid":                         leaf,
	"process.user.umask":                       leaf,
	"process.user.additionalGids":              leaf,
	"process.args":                             leaf,
	"process.env":                              leaf,
	"process.cwd":                              leaf,
	"process.capabilities":                     leaf, // checkCapabilities (R25)
	"process.rlimits":                          leaf, // checkRlimits
	"process.noNewPrivileges":                  leaf,
	"process.apparmorProfile":                  leaf, // checkLSM
	"process.oomScoreAdj":                      leaf, // clamped
	"process.scheduler":                        leaf, // checkScheduling
	"process.selinuxLabel":                     leaf, // checkLSM
	"process.ioPriority":                       leaf, // checkScheduling
	"process.execCPUAffinity":                  leaf,
	"root":                                     leaf, // checkRoot
	"mounts":                                   node,
	"mounts[].destination":                     leaf, // checkMounts
	"mounts[].type":                            leaf,
	"mounts[].source":                          leaf,
	"mounts[].options":                         leaf,
	"linux":                                    node,
	"linux.sysctl":                             leaf, // R9
	"linux.resources":                          node,
	"linux.resources.devices":                  leaf, // checkDeviceRules
	"linux.resources.memory":                   node,
	"linux.resources.memory.limit":             leaf,
	"linux.resources.memory.reservation":       leaf,
	"linux.resources.memory.swap":              leaf,
	"linux.resources.memory.kernel":            leaf,
	"linux.resources.memory.kernelTCP":         leaf,
	"linux.resources.memory.swappiness":        leaf,
	"linux.resources.memory.disableOOMKiller":  leaf, // checkResources
	"linux.resources.memory.useHierarchy":      leaf,
	"linux.resources.memory.checkBeforeUpdate": leaf,
	"linux.resources.cpu":                      node,
	"linux.resources.cpu.shares":               leaf,
	"linux.resources.cpu.quota":                leaf,
	"linux.resources.cpu.burst":                leaf,
	"linux.resources.cpu.period":               leaf,
	"linux.resources.cpu.realtimeRuntime":      leaf, // checkResources
	"linux.resources.cpu.realtimePeriod":       leaf,
	"linux.resources.cpu.cpus":                 leaf,
	"linux.resources.cpu.mems":                 leaf,
	"linux.resources.cpu.idle":                 leaf,
	"linux.resources.pids":                     leaf,
	"linux.resources.blockIO":                  node,
	"linux.resources.blockIO.weight":           leaf,
	"linux.resources.blockIO.leafWeight":       leaf,
	"linux.resources.blockIO.weightDevice":     leaf,
	"linux.resources.hugepageLimits":           leaf,
	"linux.resources.network":                  leaf,
	"linux.resources.unified":                  leaf, // checkResources
	"linux.cgroupsPath":                        leaf, // checkCgroupsPath
	"linux.namespaces":                         leaf, // checkNamespaces
	"linux.devices":                            leaf, // checkDevices
	"linux.seccomp":                            node,
	"linux.seccomp.defaultAction":              leaf, // checkSeccomp
	"linux.seccomp.defaultErrnoRet":            leaf,
	"linux.seccomp.architectures":              leaf,
	"linux.seccomp.flags":                      leaf,
	"linux.seccomp.syscalls":                   leaf,
	"linux.rootfsPropagation":                  leaf, // checkMounts
	"linux.maskedPaths":                        leaf, // defaults restored
	"linux.readonlyPaths":                      leaf,
	"linux.mountLabel":                         leaf, // checkLSM
	"linux.personality":                        leaf, // checkPersonality
}

type fieldKind int

const (
	leaf fieldKind = iota + 1
	node
)

// checkFields refuses every field of spec that is set and not known.
func checkFields(container string, spec *specs.Spec) error {
	return walkFields(container, "", reflect.ValueOf(spec).Elem())
}

// checkProcessFields does the same for an exec process spec.
func checkProcessFields(container string, p *specs.Process) error {
	return walkFields(container, "process", reflect.ValueOf(p).Elem())
}

func walkFields(container, path string, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return walkFields(container, path, v.Elem())
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := walkFields(container, path+"[]", v.Index(i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Struct:
	default:
		return nil
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		fv := v.Field(i)
		if !f.IsExported() || fv.IsZero() {
			continue
		}
		name := jsonName(f)
		if name == "-" {
			continue
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		switch knownFields[p] {
		case leaf:
			continue
		case node:
			if err := walkFields(container, p, fv); err != nil {
				return err
			}
		default:
			return &PolicyError{Container: container, Field: p, Value: fieldValue(fv),
				Reason:  "the platform does not pass this field to the sandbox",
				Allowed: "the fields containerd's CRI and ctr set for an unprivileged container"}
		}
	}
	return nil
}

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		return f.Name
	}
	return name
}

func fieldValue(v reflect.Value) string {
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return clip(string(b))
}

// DecodeSpec decodes a bundle's config.json strictly: a JSON field the
// runtime-spec types do not have is an error (json.Unmarshal would drop it
// silently), as is trailing data. The shim writes the backend's config.json
// from the decoded and checked value, never from these bytes.
func DecodeSpec(data []byte) (*specs.Spec, error) {
	var s specs.Spec
	if err := decodeStrict(data, &s); err != nil {
		return nil, &PolicyError{Field: "config.json", Value: clip(string(data)), Reason: err.Error(),
			Allowed: "an OCI runtime spec with the fields of runtime-spec " + specs.Version}
	}
	return &s, nil
}

// DecodeProcess decodes an exec process spec strictly (see DecodeSpec).
func DecodeProcess(data []byte) (*specs.Process, error) {
	var p specs.Process
	if err := decodeStrict(data, &p); err != nil {
		return nil, &PolicyError{Field: "exec process", Value: clip(string(data)), Reason: err.Error(),
			Allowed: "an OCI process spec with the fields of runtime-spec " + specs.Version}
	}
	return &p, nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}
