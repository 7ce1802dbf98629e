// Package runscwrap is cci-runsc: runsc as containerd's runc shim expects
// an OCI runtime to behave, for the containers of a pod in one gVisor
// sandbox.
//
// runsc differs from runc in three ways the runc shim cannot absorb. A
// container added to a running sandbox takes its stdio from `runsc start`,
// not `runsc create` (the runc shim gives stdio to create and captures
// start's output, so the container's output would go into that capture and
// start would never return); its pid file holds the sandbox's pid, which
// does not exit when the container does (the runc shim learns exits from
// the pid it reaps); and runsc refuses to signal a created container (the
// runc shim kills before it deletes). For such a container cci-runsc starts
// a holder process at create: it keeps the stdio the runc shim gave, runs
// `runsc start` with it when asked, then waits for the container and exits
// with its status; its pid goes into the pid file. Everything else is runsc
// itself, run with the node's flags.
//
// It is not a runtime of its own and holds no policy: the cci shim has
// already checked and rewritten the spec.
package runscwrap

import (
	"errors"
	"fmt"
	"strings"
)

// invocation is one run of cci-runsc.
type invocation struct {
	runsc  string   // the runsc binary
	node   []string // the node's runsc flags, from the adapter's script
	global []string // the runc shim's global flags (--root, --log, ...)
	root   string   // --root among them
	cmd    string   // the subcommand
	args   []string // its arguments
}

// runscArgs are the arguments for runsc running sub with args.
func (inv *invocation) runscArgs(sub string, args ...string) []string {
	out := append(append(append([]string{}, inv.node...), inv.global...), sub)
	return append(out, args...)
}

// globalWithValue are the runc shim's global flags that take a value in the
// next argument (go-runc writes them that way).
var globalWithValue = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true}

// parse reads RUNSC NODE-FLAGS... -- RUNC-SHIM-ARGS...
func parse(argv []string) (*invocation, error) {
	sep := -1
	for i, a := range argv {
		if a == "--" {
			sep = i
			break
		}
	}
	if sep < 1 {
		return nil, errors.New("usage: cci-runsc RUNSC [NODE-FLAGS...] -- RUNTIME-ARGS...")
	}
	inv := &invocation{runsc: argv[0], node: argv[1:sep], root: "/var/run/runsc"}
	rest := argv[sep+1:]
	for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
		name, value, hasValue := strings.Cut(rest[0], "=")
		if globalWithValue[name] && !hasValue {
			if len(rest) < 2 {
				return nil, fmt.Errorf("flag %s needs a value", name)
			}
			value, rest = rest[1], rest[1:]
			inv.global = append(inv.global, name, value)
		} else {
			inv.global = append(inv.global, rest[0])
		}
		if name == "--root" {
			inv.root = value
		}
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return nil, errors.New("no subcommand")
	}
	inv.cmd, inv.args = rest[0], rest[1:]
	return inv, nil
}

// createArgs are the arguments of create this wrapper acts on.
type createArgs struct {
	bundle, pidFile, consoleSocket, id string
}

// parseCreate reads create's arguments as go-runc writes them: flags with
// their values in the next argument, the container id last.
func parseCreate(args []string) (createArgs, error) {
	var c createArgs
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		target := map[string]*string{"--bundle": &c.bundle, "-b": &c.bundle, "--pid-file": &c.pidFile, "--console-socket": &c.consoleSocket}[name]
		switch {
		case target != nil && hasValue:
			*target = value
		case target != nil:
			if i+1 >= len(args) {
				return c, fmt.Errorf("create: flag %s needs a value", name)
			}
			i++
			*target = args[i]
		case strings.HasPrefix(a, "-"):
			// --no-pivot and the like: runsc's business.
		default:
			c.id = a
		}
	}
	if c.id == "" {
		return c, errors.New("create: no container id")
	}
	if c.bundle == "" {
		c.bundle = "."
	}
	return c, nil
}

// containerID is the container id among a subcommand's arguments: the
// first that is not a flag for start, kill, delete and state (kill's
// signal follows it), else the last.
func containerID(cmd string, args []string) string {
	var pos []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
		}
	}
	if len(pos) == 0 {
		return ""
	}
	if cmd == "kill" && len(pos) >= 2 {
		return pos[len(pos)-2]
	}
	if cmd == "kill" || cmd == "start" || cmd == "delete" || cmd == "state" {
		return pos[0]
	}
	return pos[len(pos)-1]
}
