package config

import (
	"strings"
	"testing"
)

func TestRootfsCheckDevice(t *testing.T) {
	r := Default().Rootfs
	if err := r.CheckDevice("/dev/loop3", 20<<30, "/etc/cci-shim/config.toml"); err != nil {
		t.Fatal(err)
	}
	err := r.CheckDevice("/dev/loop3", 10<<30, "/etc/cci-shim/config.toml")
	if err == nil || !strings.Contains(err.Error(), "rootfs device /dev/loop3 is 10737418240 bytes (10.0 GiB) but rootfs.size_bytes in node config /etc/cci-shim/config.toml is 21474836480 (20.0 GiB)") {
		t.Fatalf("err = %v", err)
	}
}
