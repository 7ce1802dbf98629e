#!/usr/bin/env bash
# The filesystem behind containerd's blockfile snapshotter on a development
# node (packaging/containerd/cci-snapshotter-blockfile.toml): an XFS image with reflink,
# loop-mounted at the snapshotter's directory, and the sparse ext4 scratch
# file every container's rootfs is cloned from (R7: a block device of
# rootfs.size_bytes). Reflink makes each clone instant and shared until
# written; without it every container would copy the whole scratch file.
#
#   setup.sh [ROOTFS_SIZE_BYTES]
#
# ROOTFS_SIZE_BYTES must equal rootfs.size_bytes in the node config (default
# 21474836480, 20 GiB; cci-agent check compares them). Idempotent: a mounted
# filesystem and an existing scratch file of that size are kept. Run it again
# after a reboot, before containerd (the loop mount does not persist).
#
# Environment: CCI_BLOCKFILE_DIR (default /var/lib/cci-shim/blockfile),
# CCI_BLOCKFILE_IMAGE (default /var/lib/cci-shim/blockfile.xfs),
# CCI_BLOCKFILE_IMAGE_SIZE (default 64G, sparse).
# Needs xfsprogs, e2fsprogs, util-linux.
set -euo pipefail

size="${1:-21474836480}"
dir="${CCI_BLOCKFILE_DIR:-/var/lib/cci-shim/blockfile}"
image="${CCI_BLOCKFILE_IMAGE:-/var/lib/cci-shim/blockfile.xfs}"
image_size="${CCI_BLOCKFILE_IMAGE_SIZE:-64G}"

[[ "$size" =~ ^[0-9]+$ && "$size" -gt 0 ]] || { echo "blockfile: rootfs size $size: want a positive number of bytes" >&2; exit 1; }
mkdir -p "$dir" "$(dirname "$image")"
if ! mountpoint -q "$dir"; then
	if [[ ! -f "$image" ]]; then
		truncate -s "$image_size" "$image"
		mkfs.xfs -q -m reflink=1 "$image"
		echo "blockfile: created $image (XFS, reflink, $image_size sparse)"
	fi
	mount -o loop "$image" "$dir"
	echo "blockfile: mounted $image at $dir"
fi
mkdir -p "$dir/root"
scratch="$dir/scratch.ext4"
if [[ -f "$scratch" && "$(stat -c %s "$scratch")" != "$size" ]]; then
	echo "blockfile: $scratch is $(stat -c %s "$scratch") bytes, not $size; remove it (and containerd's blockfile snapshots) to change the size" >&2
	exit 1
fi
if [[ ! -f "$scratch" ]]; then
	truncate -s "$size" "$scratch.tmp"
	mkfs.ext4 -q -F -E nodiscard "$scratch.tmp"
	mv "$scratch.tmp" "$scratch"
	echo "blockfile: created $scratch ($size bytes, ext4, sparse)"
fi
