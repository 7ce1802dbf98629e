package tests

import (
	"strings"
	"testing"

	"github.com/cci-shim/cci-shim/tests/e2eenv"
)

// TestRootfsSizeMustMatch: rootfs.size_bytes is what pods get, or they are
// refused. The env's blockfile scratch file (every container's rootfs) is
// 1 GiB; a node config that says 20 GiB (the default) refuses the container
// with both sizes named, one that says 1 GiB runs it on a 1 GiB device.
func TestRootfsSizeMustMatch(t *testing.T) {
	env := e2eenv.Start(t, e2eenv.Options{ScratchSize: 1 << 30})
	_, stderr, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "size-mismatch", "true")
	if err == nil || !strings.Contains(stderr, "is 1073741824 bytes (1.0 GiB) but rootfs.size_bytes in node config "+env.NodeConfigPath+" is 21474836480 (20.0 GiB)") {
		t.Fatalf("ctr run with a 1 GiB rootfs and rootfs.size_bytes = 20 GiB: %v\n%s", err, stderr)
	}
	env.Ctr("container", "rm", "size-mismatch")

	if err := env.SetNodeConfig("rootfs.size_bytes = 1073741824\n"); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := env.CtrRun("--rm", "--runtime", cciRuntime, env.Image, "size-match", "sh", "-c", "cat /sys/class/block/$(awk '$2 == \"/\" {print $1}' /proc/mounts | sed 's#/dev/##')/size")
	if err != nil {
		t.Fatalf("ctr run with matching sizes: %v\n%s", err, stderr)
	}
	if strings.TrimSpace(out) != "2097152" { // 512-byte sectors
		t.Errorf("the container's rootfs is %s sectors, want 2097152 (1 GiB)", strings.TrimSpace(out))
	}
	assertNoLeaks(t, env)
}
