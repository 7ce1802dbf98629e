#!/usr/bin/env bash
# The devmapper thin pool behind containerd's devmapper snapshotter (R7: every
# pod's rootfs is a thin device of base_image_size from this pool), and the
# containerd drop-in that uses it.
#
#   thinpool.sh create DATA_DEVICE METADATA_DEVICE [POOL] [--wipe-metadata]
#       First set-up. Records the devices in $CCI_THINPOOL_ENV, activates the
#       pool and links the devmapper drop-in into containerd's conf.d.
#       Idempotent: an active pool is left as it is. Non-destructive: metadata
#       that already holds a thin pool is reused, never zeroed; a metadata
#       device holding anything else is refused unless --wipe-metadata says
#       to zero its superblock.
#   thinpool.sh activate
#       At boot, before containerd (cci-thinpool.service): device-mapper tables
#       do not survive a reboot. Re-creates the pool from the recorded devices
#       without writing to them, then links the drop-in. If the pool cannot be
#       brought up, the drop-in link is removed, so containerd starts without
#       devmapper: only cci pods fail, and cci-agent check says why.
#   thinpool.sh status
#       dmsetup status of the pool.
#
# Environment (for tests and other layouts):
#   CCI_THINPOOL_ENV       device record, default /etc/cci-shim/thinpool.env
#   CCI_CONTAINERD_CONFD   containerd's drop-in dir, default /etc/containerd/conf.d
#   CCI_DEVMAPPER_DROPIN   the drop-in to link, default /usr/local/share/cci-shim/cci-snapshotter-devmapper.toml
# Needs dmsetup, blockdev, od and the dm_thin_pool module (Debian: dmsetup).
set -euo pipefail

env_file="${CCI_THINPOOL_ENV:-/etc/cci-shim/thinpool.env}"
confd="${CCI_CONTAINERD_CONFD:-/etc/containerd/conf.d}"
dropin="${CCI_DEVMAPPER_DROPIN:-/usr/local/share/cci-shim/cci-snapshotter-devmapper.toml}"
link="$confd/cci-snapshotter-devmapper.toml"

# The dm-thin superblock's magic number (27022010), a little-endian u64 at
# byte 32 of the metadata device.
thin_magic=27022010

log() { echo "thinpool: $*" >&2; }
die() {
	log "$*"
	exit 1
}

pool_active() { # pool
	local out
	out="$(dmsetup status "$1" 2>/dev/null)" || return 1
	[[ "$(awk '{print $3}' <<<"$out")" == thin-pool ]] || die "device-mapper device $1 exists but is not a thin pool: $out"
}

# metadata_state prints "pool" (holds thin-pool metadata), "empty" (a zeroed
# superblock: the kernel formats it) or "other".
metadata_state() { # device
	local magic zero
	magic="$(od -A n -t u8 -j 32 -N 8 "$1" | tr -d ' ')"
	if [[ "$magic" == "$thin_magic" ]]; then
		echo pool
		return
	fi
	zero="$(od -A n -t x1 -N 4096 -v "$1" | tr -d ' \n' | tr -d 0)"
	if [[ -z "$zero" ]]; then
		echo empty
	else
		echo other
	fi
}

create_table() { # pool data meta
	local sectors
	sectors="$(blockdev --getsz "$2")"
	# 64 KiB blocks (128 sectors), 32768 sectors low-water mark.
	dmsetup create "$1" --table "0 $sectors thin-pool $3 $2 128 32768 1 skip_block_zeroing"
}

link_dropin() {
	[[ -f "$dropin" ]] || die "the devmapper drop-in $dropin is missing"
	mkdir -p "$confd"
	ln -sfn "$dropin" "$link"
	log "linked $link -> $dropin"
}

unlink_dropin() {
	if [[ -e "$link" || -L "$link" ]]; then
		rm -f "$link"
		log "removed $link: containerd starts without the devmapper snapshotter (cci pods fail until the pool is back)"
	fi
}

cmd_create() {
	local data="" meta="" pool="cci-thinpool" wipe=0 args=()
	for a in "$@"; do
		case "$a" in
		--wipe-metadata) wipe=1 ;;
		-*) die "unknown flag $a" ;;
		*) args+=("$a") ;;
		esac
	done
	[[ ${#args[@]} -ge 2 && ${#args[@]} -le 3 ]] || die "usage: thinpool.sh create DATA_DEVICE METADATA_DEVICE [POOL] [--wipe-metadata]"
	data="${args[0]}" meta="${args[1]}"
	[[ ${#args[@]} -eq 3 ]] && pool="${args[2]}"
	[[ -e "$data" ]] || die "data device $data does not exist"
	[[ -e "$meta" ]] || die "metadata device $meta does not exist"
	if [[ -f "$env_file" ]]; then
		# shellcheck source=/dev/null
		. "$env_file"
		if [[ "$DATA" != "$data" || "$META" != "$meta" || "$POOL" != "$pool" ]]; then
			die "$env_file already records pool $POOL on $DATA (metadata $META); remove it first to use other devices"
		fi
	fi
	modprobe dm_thin_pool || log "modprobe dm_thin_pool failed; trying anyway"
	if pool_active "$pool"; then
		log "pool $pool is already active: nothing to create"
	else
		case "$(metadata_state "$meta")" in
		pool) log "$meta holds the metadata of an existing pool: reusing it, not zeroing it" ;;
		empty) log "$meta is empty: the kernel formats new pool metadata" ;;
		other)
			if [[ $wipe -ne 1 ]]; then
				die "$meta holds data that is not thin-pool metadata; refusing to overwrite it (rerun with --wipe-metadata to zero its superblock and lose what is there)"
			fi
			log "zeroing the superblock of $meta (--wipe-metadata)"
			dd if=/dev/zero of="$meta" bs=4096 count=1 conv=notrunc status=none
			;;
		esac
		create_table "$pool" "$data" "$meta"
		log "thin pool $pool created on $data (metadata $meta)"
	fi
	mkdir -p "$(dirname "$env_file")"
	printf 'DATA=%s\nMETA=%s\nPOOL=%s\n' "$data" "$meta" "$pool" >"$env_file.tmp"
	mv "$env_file.tmp" "$env_file"
	link_dropin
}

cmd_activate() {
	trap 'unlink_dropin' ERR
	[[ -f "$env_file" ]] || {
		unlink_dropin
		die "$env_file is missing: run thinpool.sh create first"
	}
	# shellcheck source=/dev/null
	. "$env_file"
	: "${DATA:?DATA missing in $env_file}" "${META:?META missing in $env_file}" "${POOL:?POOL missing in $env_file}"
	modprobe dm_thin_pool || log "modprobe dm_thin_pool failed; trying anyway"
	if pool_active "$POOL"; then
		log "pool $POOL is already active"
	else
		[[ -e "$DATA" && -e "$META" ]] || {
			unlink_dropin
			die "pool $POOL: device $DATA or $META is missing"
		}
		local state
		state="$(metadata_state "$META")"
		if [[ "$state" != pool ]]; then
			unlink_dropin
			die "pool $POOL: $META holds no thin-pool metadata ($state): not creating an empty pool under containerd's existing snapshots; run thinpool.sh create to set it up"
		fi
		create_table "$POOL" "$DATA" "$META"
		log "thin pool $POOL re-created on $DATA (metadata $META, reused)"
	fi
	link_dropin
}

cmd_status() {
	local pool="${1:-}"
	if [[ -z "$pool" && -f "$env_file" ]]; then
		# shellcheck source=/dev/null
		. "$env_file"
		pool="$POOL"
	fi
	dmsetup status "${pool:-cci-thinpool}"
}

case "${1:-}" in
create) shift && cmd_create "$@" ;;
activate) cmd_activate ;;
status) shift && cmd_status "$@" ;;
-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) die "usage: thinpool.sh create DATA META [POOL] [--wipe-metadata] | activate | status (see --help)" ;;
esac
