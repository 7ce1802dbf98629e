package config

import (
	"fmt"
	"os"
)

// PrepareStateDir creates state_dir if it is missing and checks that files
// can be created in it. The shim's start subcommand calls it before it
// spawns the pod's shim: there an unusable state_dir fails the container's
// creation with an error naming the key, the path, the file that set it
// and the cause, where the spawned shim would die and containerd report
// only "ttrpc: closed". source is the node config file, for the message.
func (c Config) PrepareStateDir(source string) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("state_dir %s (node config %s): %s: %w; it must be a directory root can write, on tmpfs (default /run/cci-shim)",
			c.StateDir, source, what, err)
	}
	if err := os.MkdirAll(c.StateDir, 0o711); err != nil {
		return fail("cannot create it", err)
	}
	f, err := os.CreateTemp(c.StateDir, ".probe-*")
	if err != nil {
		return fail("cannot create files in it", err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fail("cannot remove files from it", err)
	}
	return nil
}
