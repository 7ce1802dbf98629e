// Command cci-agent is the cci-shim node agent (R21). Run `cci-agent --help`.
package main

import (
	"os"

	"github.com/cci-shim/cci-shim/cmd/cci-agent/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
