#!/usr/bin/env bash
# Creates the devmapper thin pool behind containerd's devmapper snapshotter
# (R7: every pod's rootfs is a thin device of base_image_size from this pool).
# Usage: thinpool.sh DATA_DEVICE METADATA_DEVICE [POOL_NAME]
# Needs the dm_thin_pool module and dmsetup (Debian: dmsetup, thin-provisioning-tools).
set -euo pipefail
data="${1:?data device}"
meta="${2:?metadata device}"
pool="${3:-cci-thinpool}"
modprobe dm_thin_pool
# Zero the metadata superblock so the pool starts empty.
dd if=/dev/zero of="$meta" bs=4096 count=1 conv=notrunc status=none
sectors=$(blockdev --getsz "$data")
# 64 KiB blocks (128 sectors), 32768 sectors low-water mark.
dmsetup create "$pool" --table "0 $sectors thin-pool $meta $data 128 32768 1 skip_block_zeroing"
echo "thin pool $pool created on $data (metadata $meta)"
