package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/pelletier/go-toml/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
	"github.com/cci-shim/cci-shim/config"
	"github.com/cci-shim/cci-shim/internal/version"
)

const envHelp = `Usage: cci-agent [global flags] env [--json]

Prints what a cci shim on this node would run with: the node config file it
reads and why that one, the effective configuration (defaults filled in),
cci-shim's version, and the versions of containerd (binary and running
daemon), the backend shim, runc, runsc and Kata found in PATH.

Flags:
  --json   one JSON object: {"cciShim", "nodeConfig", "config", "components": [{"name", "path", "version", "error"}]}
` + globalHelp

// component is one program's version.
type component struct {
	Name    string `json:"name"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
}

type envReport struct {
	CCIShim    version.Info   `json:"cciShim"`
	NodeConfig config.Source  `json:"nodeConfig"`
	Config     *config.Config `json:"config,omitempty"`
	ConfigErr  string         `json:"configError,omitempty"`
	Components []component    `json:"components"`
}

func runEnv(args []string, g globals, stdout, stderr io.Writer) int {
	cmd := newCommand("env", envHelp, stdout, stderr)
	asJSON := cmd.Bool("json", false, "")
	if code, ok := cmd.parse(args); !ok {
		return code
	}
	cfg, src, err := loadConfig(g.configPath)
	rep := envReport{CCIShim: version.Get(), NodeConfig: src}
	if err != nil {
		rep.ConfigErr = err.Error()
	} else {
		rep.Config = &cfg
	}
	rep.Components = components(checks.RealHost{}, rep.Config, g.containerdConfigPath)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "cci-agent env: %v\n", err)
			return 1
		}
	} else if err := writeEnv(stdout, rep); err != nil {
		fmt.Fprintf(stderr, "cci-agent env: %v\n", err)
		return 1
	}
	if rep.ConfigErr != "" {
		return 1
	}
	return 0
}

// components asks each program for its version.
func components(h checks.Host, cfg *config.Config, containerdConfig string) []component {
	probe := func(name, bin string, args ...string) component {
		c := component{Name: name}
		path, err := h.LookPath(bin)
		if err != nil {
			c.Error = "not found in PATH"
			return c
		}
		c.Path = path
		out, err := h.Output(path, args...)
		if err != nil {
			c.Error = fmt.Sprintf("%v: %s", err, firstLine(out))
			return c
		}
		c.Version = summary(out)
		return c
	}
	cs := []component{probe("containerd", "containerd", "--version")}
	ctrd := checks.LoadContainerd(h, "/", containerdConfig)
	daemon := component{Name: "containerd daemon", Path: ctrd.Address}
	if ctrd.Err != nil {
		daemon.Error = ctrd.Err.Error()
	} else if v, err := daemonVersion(ctrd.Address); err != nil {
		daemon.Error = err.Error()
	} else {
		daemon.Version = v
	}
	cs = append(cs, daemon)
	if cfg != nil {
		cs = append(cs, probe("backend shim ("+cfg.Backend.Kind+")", cfg.Backend.Binary, "--version"))
	}
	cs = append(cs, probe("runc", "runc", "--version"), probe("runsc", "runsc", "--version"), probe("kata-runtime", "kata-runtime", "--version"))
	return cs
}

// daemonVersion asks the running containerd for its version.
func daemonVersion(address string) (string, error) {
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	v, err := versionapi.NewVersionClient(conn).Version(ctx, &emptypb.Empty{})
	if err != nil {
		return "", fmt.Errorf("not reachable at %s: %w", address, err)
	}
	return strings.TrimSpace(v.Version + " " + v.Revision), nil
}

// summary is a program's version output on one line (its first three
// non-empty lines).
func summary(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && len(lines) < 3 {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func writeEnv(w io.Writer, rep envReport) error {
	fmt.Fprintf(w, "cci-shim %s (revision %s, %s, containerd libraries %s)\n\n", rep.CCIShim.Version, rep.CCIShim.Revision,
		rep.CCIShim.GoVersion, rep.CCIShim.Containerd)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tPATH\tVERSION")
	for _, c := range rep.Components {
		v := c.Version
		if c.Error != "" {
			v = "(" + c.Error + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, dash(c.Path), v)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nnode config: %s (%s)\n", rep.NodeConfig.Path, rep.NodeConfig.From)
	if rep.ConfigErr != "" {
		fmt.Fprintf(w, "error: %s\n", rep.ConfigErr)
		return nil
	}
	data, err := toml.Marshal(rep.Config)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "effective configuration (defaults filled in):\n%s\n", indent(string(data), "  "))
	return nil
}
