package config

import "fmt"

// CheckDevice compares the size of a container's rootfs block device with
// rootfs.size_bytes (R7). The snapshotter decides the size (devmapper's
// base_image_size, the blockfile scratch file); a node whose snapshotter
// gives another size would run pods on a rootfs the node config does not
// describe, so the shim refuses them with this error. source is the node
// config file, for the message.
func (r Rootfs) CheckDevice(device string, size int64, source string) error {
	if size == r.SizeBytes {
		return nil
	}
	return fmt.Errorf("rootfs device %s is %d bytes (%.1f GiB) but rootfs.size_bytes in node config %s is %d (%.1f GiB): "+
		"the snapshotter (devmapper base_image_size, or the blockfile scratch file) and the node config must agree; cci-agent check compares them",
		device, size, float64(size)/(1<<30), source, r.SizeBytes, float64(r.SizeBytes)/(1<<30))
}
