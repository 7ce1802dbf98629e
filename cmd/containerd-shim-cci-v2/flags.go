package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cci-shim/cci-shim/internal/version"
)

const usage = `%[1]s — the cci runtime (io.containerd.cci.v2), a containerd shim v2.

containerd starts it for every pod that selects the runtime (CRI handler "cci",
or ctr run --runtime io.containerd.cci.v2); it is not meant to be run by hand:
  %[1]s -namespace NS -address ADDR -publish-binary BIN -id ID start|delete

It reads the node configuration from the runtime option ConfigPath, else
$CCI_SHIM_CONFIG, else /etc/cci-shim/config.toml; cci-agent check and
cci-agent env show what a shim on this node would use.

Flags:
  -v, --version   print cci-shim's version, revision and containerd libraries, and exit
  -h, --help      this help
  The other flags (-namespace, -id, -address, -publish-binary, -socket,
  -bundle, -debug, -info) are containerd's shim protocol.
`

// intercept handles the flags that must report cci-shim rather than
// containerd's shim harness (whose own -v prints containerd's version). It
// parses the harness's flag set; anything it does not own, or cannot parse,
// is left to the harness.
func intercept(args []string, stdout io.Writer) (code int, done bool) {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var showVersion bool
	fs.BoolVar(&showVersion, "v", false, "")
	fs.BoolVar(&showVersion, "version", false, "")
	for _, name := range []string{"debug", "info"} {
		fs.Bool(name, false, "")
	}
	for _, name := range []string{"namespace", "id", "socket", "debug-socket", "bundle", "address", "publish-binary"} {
		fs.String(name, "", "")
	}
	err := fs.Parse(args[1:])
	name := filepath.Base(args[0])
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stdout, usage, name)
		return 0, true
	case err != nil:
		return 0, false
	case showVersion:
		version.Print(stdout, name)
		return 0, true
	}
	return 0, false
}
