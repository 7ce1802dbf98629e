package sandbox

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// CheckExec checks an exec process (containerd's ExecProcessRequest.Spec,
// decoded with DecodeProcess) against the container it runs in: container
// is the spec the shim gave the backend for that container (after Apply).
// An exec may narrow what the container has, never widen it:
//   - known fields only, and the same capability, rlimit, scheduling rules
//     as a container;
//   - every capability set a subset of the container's same set;
//   - a non-root container's user: the same uid and gid, supplementary
//     groups among the container's; a root container may exec as anyone;
//   - rlimits: each at most the container's value of the same type (a type
//     the container does not set is refused);
//   - noNewPrivileges kept when the container has it;
//   - the same AppArmor profile and SELinux label;
//   - oomScoreAdj not below the container's (raised to it).
//
// containerd's CRI (ExecSync, kubectl exec) and ctr task exec copy the
// container's process and change only args, env, cwd and terminal, so they
// pass. proc may be rewritten (oomScoreAdj).
func CheckExec(containerName string, container *specs.Spec, proc *specs.Process, cfg Config) error {
	if container == nil || container.Process == nil || proc == nil {
		return &PolicyError{Container: containerName, Field: "exec process", Value: "(none)", Allowed: "a process spec"}
	}
	cfg = cfg.withDefaults()
	if err := checkProcessFields(containerName, proc); err != nil {
		return err
	}
	if _, err := checkCapabilities(containerName, proc, &cfg); err != nil {
		return err
	}
	if err := checkRlimits(containerName, proc, &cfg); err != nil {
		return err
	}
	if err := checkScheduling(containerName, proc, &cfg); err != nil {
		return err
	}
	c := container.Process
	widened := func(field, value, allowed string) error {
		return &PolicyError{Container: containerName, Field: "exec " + field, Value: clip(value),
			Reason: "wider than the container's", Allowed: allowed}
	}
	have, want := capSets(c.Capabilities), capSets(proc.Capabilities)
	for _, set := range []string{"bounding", "effective", "permitted", "inheritable", "ambient"} {
		for _, cp := range want[set] {
			if !slices.Contains(have[set], cp) {
				return widened("process.capabilities."+set, cp, "the container's "+set+" capabilities: "+listOrNone(have[set]))
			}
		}
	}
	if c.User.UID != 0 {
		if proc.User.UID != c.User.UID || proc.User.GID != c.User.GID {
			return widened("process.user", fmt.Sprintf("%d:%d", proc.User.UID, proc.User.GID), fmt.Sprintf("the container's user %d:%d", c.User.UID, c.User.GID))
		}
		for _, g := range proc.User.AdditionalGids {
			if !slices.Contains(c.User.AdditionalGids, g) && g != c.User.GID {
				return widened("process.user.additionalGids", fmt.Sprint(g), fmt.Sprintf("the container's groups %v", c.User.AdditionalGids))
			}
		}
	}
	for _, r := range proc.Rlimits {
		i := slices.IndexFunc(c.Rlimits, func(x specs.POSIXRlimit) bool { return x.Type == r.Type })
		if i < 0 || r.Hard > c.Rlimits[i].Hard || r.Soft > c.Rlimits[i].Hard {
			return widened("process.rlimits", fmt.Sprintf("%s soft %d hard %d", r.Type, r.Soft, r.Hard), "at most the container's rlimits")
		}
	}
	if c.NoNewPrivileges && !proc.NoNewPrivileges {
		return widened("process.noNewPrivileges", "false", "true, as the container")
	}
	if proc.ApparmorProfile != c.ApparmorProfile {
		return widened("process.apparmorProfile", proc.ApparmorProfile, fmt.Sprintf("the container's profile %q", c.ApparmorProfile))
	}
	if proc.SelinuxLabel != c.SelinuxLabel {
		return widened("process.selinuxLabel", proc.SelinuxLabel, fmt.Sprintf("the container's label %q", c.SelinuxLabel))
	}
	if c.OOMScoreAdj != nil {
		v := *c.OOMScoreAdj
		if proc.OOMScoreAdj != nil {
			v = max(v, *proc.OOMScoreAdj)
		}
		v = ClampOOMScoreAdj(v, cfg.OOMScoreAdjFloor)
		proc.OOMScoreAdj = &v
	}
	return nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "(none)"
	}
	return strings.Join(l, ", ")
}
