package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/config"
)

const checkHelp = `Usage: cci-agent [global flags] check [--json]

Runs the node checks against the real thing: KVM (a VM is created),
vhost-vsock, CPU virtualisation, the backend shim and its OCI runtime or
hypervisor, Kata's configuration parsed as TOML (enable_annotations,
sandbox_cgroup_only, the disk rate limiter), containerd's effective
configuration (the cci runtime and its pod_annotations, its root and state
against policy.containerd_root/_state), the devmapper thin pool (dmsetup
status), rootfs.size_bytes against the snapshotter, cgroups, GPUs, and that
the shims' directories are writable. It changes nothing on the node.

Each check is OK, WARN (works, not as production needs), FAIL, or SKIP
(does not apply to this node's backend), with the cause and the fix.

Exit status: 0 every check OK or SKIP, 1 at least one FAIL, 3 WARN but no
FAIL, 2 usage error.

Flags:
  --json   one JSON object: {"status", "exitCode", "nodeConfig", "containerdConfig", "checks": [{"name", "status", "detail", "fix"}]}
` + globalHelp

// checkReport is `cci-agent check --json`.
type checkReport struct {
	Status           checks.Status   `json:"status"`
	ExitCode         int             `json:"exitCode"`
	NodeConfig       config.Source   `json:"nodeConfig"`
	ContainerdConfig string          `json:"containerdConfig"`
	Checks           []checks.Result `json:"checks"`
}

func runCheck(args []string, g globals, stdout, stderr io.Writer) int {
	cmd := newCommand("check", checkHelp, stdout, stderr)
	asJSON := cmd.Bool("json", false, "")
	if code, ok := cmd.parse(args); !ok {
		return code
	}
	cfg, src, err := loadConfig(g.configPath)
	rs := checks.Runner{Root: "/", Cfg: cfg, Source: src, LoadErr: err, ContainerdConfig: g.containerdConfigPath}.Run()
	rep := checkReport{Status: checks.Summary(rs), ExitCode: checks.ExitCode(rs), NodeConfig: src,
		ContainerdConfig: g.containerdConfigPath, Checks: rs}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "cci-agent check: %v\n", err)
			return 1
		}
		return rep.ExitCode
	}
	writeChecks(stdout, rep)
	return rep.ExitCode
}

func writeChecks(w io.Writer, rep checkReport) {
	fmt.Fprintf(w, "node config: %s (%s)\ncontainerd config: %s\n\n", rep.NodeConfig.Path, rep.NodeConfig.From, rep.ContainerdConfig)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
	for _, r := range rep.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Status, r.Detail)
		if r.Fix != "" && !r.Status.Passed() {
			fmt.Fprintf(tw, "\t\tfix: %s\n", r.Fix)
		}
	}
	tw.Flush()
	counts := map[checks.Status]int{}
	for _, r := range rep.Checks {
		counts[r.Status]++
	}
	fmt.Fprintf(w, "\n%s: %d OK, %d WARN, %d FAIL, %d SKIP (exit status %d)\n",
		rep.Status, counts[checks.OK], counts[checks.Warn], counts[checks.Fail], counts[checks.Skip], rep.ExitCode)
}
