package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/checks"
)

func runCheck(args []string, configPath string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cci-agent check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "machine-readable output")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := loadConfig(configPath, false)
	if err != nil {
		fmt.Fprintf(stderr, "cci-agent check: %v\n", err)
		return 1
	}
	results := checks.Runner{Root: "/", Cfg: cfg}.Run()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(results)
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL")
		for _, r := range results {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, r.Status, r.Detail)
		}
		tw.Flush()
	}
	if checks.Failed(results) {
		return 1
	}
	return 0
}
