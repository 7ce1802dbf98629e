// Package version says which cci-shim a binary is: the version and revision
// stamped at build time (make build sets them with -ldflags -X from
// `git describe`), the Go toolchain and the containerd libraries it was built
// against. Every cci-shim binary prints it for --version and the node agent
// exports it as cci_build_info.
//
// It is not for the versions of other programs on the node (containerd's
// daemon, runc, runsc, Kata): cci-agent env asks those binaries itself.
package version

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	ctrdversion "github.com/containerd/containerd/v2/version"
)

// Set at build time, e.g.
//
//	-ldflags "-X github.com/cci-shim/cci-shim/internal/version.Version=v1.2.0
//	          -X github.com/cci-shim/cci-shim/internal/version.Revision=<git sha>"
//
// A binary built without them (go build, go test) reports Unknown.
var (
	Version  = ""
	Revision = ""
)

// Unknown is reported for a value the build did not stamp.
const Unknown = "unknown"

// containerdModule is the module whose version the containerd libraries
// (shim harness, client, ttrpc API) report.
const containerdModule = "github.com/containerd/containerd/v2"

// Info is what a binary knows about its own build.
type Info struct {
	Version    string `json:"version"`
	Revision   string `json:"revision"`
	GoVersion  string `json:"goVersion"`
	Containerd string `json:"containerd"` // the containerd libraries built in
}

// Get returns this binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return build(Version, Revision, bi)
}

// build fills the unset fields from the Go build information.
func build(ver, rev string, bi *debug.BuildInfo) Info {
	in := Info{Version: ver, Revision: rev, GoVersion: runtime.Version(), Containerd: ctrdversion.Version}
	if bi != nil {
		for _, dep := range bi.Deps {
			if dep.Path == containerdModule {
				in.Containerd = dep.Version
				if dep.Replace != nil {
					in.Containerd = dep.Replace.Version
				}
			}
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && in.Revision == "" {
				in.Revision = s.Value
			}
		}
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
	}
	if in.Version == "" {
		in.Version = Unknown
	}
	if in.Revision == "" {
		in.Revision = Unknown
	}
	return in
}

// String is the one-line form: "cci-shim v1.2.0 (revision abc, go1.26, containerd v2.4.2)".
func (in Info) String() string {
	return fmt.Sprintf("cci-shim %s (revision %s, %s, containerd libraries %s)", in.Version, in.Revision, in.GoVersion, in.Containerd)
}

// Print writes what --version prints for program.
func Print(w io.Writer, program string) {
	in := Get()
	fmt.Fprintf(w, "%s (cci-shim) %s\n  revision:   %s\n  go:         %s\n  containerd: %s (libraries built in)\n",
		program, in.Version, in.Revision, in.GoVersion, in.Containerd)
}
