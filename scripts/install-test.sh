#!/usr/bin/env bash
# Follows README.md's "Installing on a node" word for word, as root on a fresh
# machine, with the development variant (runc backend, blockfile snapshotter),
# and checks the result: cci-agent check passes (warnings allowed), a
# container runs through the cci runtime on its own 20 GiB block device.
#
# The fresh machine is this one seen from private namespaces: mount (/etc,
# /usr/local, /var/lib and /var/log are overlays whose changes land in a temp
# dir, /run is empty, containerd's and cci's /var/lib dirs are empty temp
# dirs), network (127.0.0.1 is private) and PID (everything started inside is
# killed with it). The host's files, containerd and network are not touched.
# What the README assumes is there must be: containerd 2 and its runc shim
# (in PATH or $CCI_TOOLS_DIR), runc, xfsprogs, e2fsprogs, busybox-static.
#
# The README's code blocks between "install-test: begin/end" markers run in
# order with `bash -e`. Two stand-ins: systemctl (this namespace has no
# systemd: daemon-reload does nothing; start, restart and enable --now run
# the unit's ExecStart, or containerd, in the background and wait until it
# serves), and `ctr image pull` (no registry: the same name is imported from
# an image built here from busybox-static).
#
# Usage: scripts/install-test.sh        (prints "install-test: ok" at the end)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
tools="${CCI_TOOLS_DIR:-$repo/.tools/bin}"

if [[ "${1:-}" != --inside ]]; then
	[[ "$(id -u)" -eq 0 ]] || { echo "install-test: needs root" >&2; exit 1; }
	work="$(mktemp -d /tmp/cci-install-XXXXXX)"
	rc=0
	unshare --mount --net --pid --fork --kill-child=SIGKILL --propagation private --mount-proc \
		"$0" --inside "$work" || rc=$?
	# The namespaces are gone with everything in them; make sure of it.
	leaks=()
	for f in /sys/block/loop*/loop/backing_file; do
		[[ -f "$f" ]] || continue
		b="$(cat "$f")"
		if [[ "$b" == "$work"* || "$b" == /var/lib/cci-shim/* ]]; then leaks+=("loop device $(basename "$(dirname "$(dirname "$f")")") ($b)"); fi
	done
	for d in /sys/fs/cgroup/*/default/cci-hello /sys/fs/cgroup/default/cci-hello; do
		[[ -e "$d" ]] && leaks+=("cgroup $d")
	done
	if grep -q " $work" /proc/self/mountinfo; then leaks+=("mounts under $work"); fi
	rm -rf "$work"
	if [[ ${#leaks[@]} -gt 0 ]]; then
		printf 'install-test: left behind: %s\n' "${leaks[@]}" >&2
		exit 1
	fi
	[[ $rc -eq 0 ]] && echo "install-test: ok"
	exit "$rc"
fi

# ---- inside the namespaces: PID 1 of a fresh PID namespace ----
work="$2"
say() { echo "install-test: $*"; }

# A fresh root over this machine's: overlays for what the steps write.
for d in /etc /usr/local /var/lib /var/log; do
	n="${d//\//_}"
	mkdir -p "$work/upper$n" "$work/wk$n"
	mount -t overlay overlay -o "lowerdir=$d,upperdir=$work/upper$n,workdir=$work/wk$n" "$d"
done
mount -t tmpfs -o mode=0755 tmpfs /run
# Snapshotters and loop devices need a real filesystem, not an overlay.
for d in /var/lib/containerd /var/lib/cci-shim; do
	mkdir -p "$d" "$work/fs$d"
	mount --bind "$work/fs$d" "$d"
done
ip link set lo up

# The stand-ins.
fake="$work/fakebin"
mkdir -p "$fake" /run/install-test
cat >"$fake/systemctl" <<'SYSTEMCTL'
#!/usr/bin/env bash
# systemctl for install-test.sh: no systemd in this namespace.
set -euo pipefail
start() { # unit
	local unit="${1%.service}" pidfile="/run/install-test/${1%.service}.pid" cmd
	if [[ -f "$pidfile" ]]; then
		kill "$(cat "$pidfile")" 2>/dev/null || true
		while kill -0 "$(cat "$pidfile")" 2>/dev/null; do sleep 0.1; done
	fi
	if [[ "$unit" == containerd ]]; then
		cmd=(containerd)
	else
		read -r -a cmd <<<"$(sed -n 's/^ExecStart=//p' "/etc/systemd/system/$unit.service")"
	fi
	nohup "${cmd[@]}" >"/run/install-test/$unit.log" 2>&1 &
	echo $! >"$pidfile"
	for _ in $(seq 100); do # wait until it serves, as Type=notify would
		case "$unit" in
		containerd) ctr version >/dev/null 2>&1 && return 0 ;;
		cci-agent) (exec 3<>/dev/tcp/127.0.0.1/9477) 2>/dev/null && return 0 ;;
		*) return 0 ;;
		esac
		kill -0 "$(cat "$pidfile")" 2>/dev/null || { cat "/run/install-test/$unit.log" >&2; echo "systemctl: $unit exited" >&2; exit 1; }
		sleep 0.2
	done
	echo "systemctl: $unit does not serve" >&2
	exit 1
}
case "$1" in
daemon-reload) ;;
start | restart) start "$2" ;;
enable) [[ "${2:-}" == --now ]] && start "$3" ;;
*) echo "systemctl (install-test): $1 not supported" >&2; exit 1 ;;
esac
SYSTEMCTL
chmod +x "$fake/systemctl"
export PATH="$fake:/usr/local/bin:$tools:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:$(dirname "$(command -v go)")"

# The image `ctr image pull` stands for: busybox-static as an OCI archive.
image_archive() { # dst name
	local d="$work/image" ld ls cd cs md ms arch
	mkdir -p "$d/rootfs/bin" "$d/blobs/sha256"
	cp /bin/busybox "$d/rootfs/bin/busybox"
	for a in sh df ls cat echo true sleep; do ln -s busybox "$d/rootfs/bin/$a"; done
	tar -C "$d/rootfs" --numeric-owner --owner=0 --group=0 -cf "$d/layer" .
	ld="$(sha256sum "$d/layer" | cut -d' ' -f1)" ls="$(stat -c %s "$d/layer")"
	mv "$d/layer" "$d/blobs/sha256/$ld"
	arch="$(dpkg --print-architecture)"
	printf '{"architecture":"%s","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$arch" "$ld" >"$d/c"
	cd="$(sha256sum "$d/c" | cut -d' ' -f1)" cs="$(stat -c %s "$d/c")"
	mv "$d/c" "$d/blobs/sha256/$cd"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
		"$cd" "$cs" "$ld" "$ls" >"$d/m"
	md="$(sha256sum "$d/m" | cut -d' ' -f1)" ms="$(stat -c %s "$d/m")"
	mv "$d/m" "$d/blobs/sha256/$md"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s"}}]}' \
		"$md" "$ms" "$2" >"$d/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$d/oci-layout"
	tar -C "$d" -cf "$1" oci-layout index.json blobs
}
image_archive "$work/busybox.tar" docker.io/library/busybox:latest

# The README's steps, verbatim but for the pull.
steps="$work/readme-steps.sh"
awk '/<!-- install-test: begin -->/ { on = 1; next }
     /<!-- install-test: end -->/ { on = 0; next }
     on && /^```sh$/ { code = 1; next }
     on && code && /^```$/ { code = 0; next }
     on && code { print }' "$repo/README.md" |
	sed -E 's#^ctr image pull ([^ ]+)$#ctr image import --no-unpack '"$work"'/busybox.tar \# stands for: ctr image pull \1#' >"$steps"
[[ -s "$steps" ]] || { say "README has no install-test steps"; exit 1; }
say "running README's install steps:"
sed 's/^/  | /' "$steps"
cd "$repo"
rc=0
bash -e -x "$steps" || rc=$?

# Tear down in order: the agent, containerd (its shims are gone with their
# containers), the blockfile filesystem.
for unit in cci-agent containerd; do
	if [[ -f /run/install-test/$unit.pid ]]; then
		pid="$(cat /run/install-test/$unit.pid)"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	fi
done
if [[ $rc -ne 0 ]]; then
	say "a README step failed (exit status $rc); containerd's log:"
	tail -n 30 /run/install-test/containerd.log 2>/dev/null || true
fi
if mountpoint -q /var/lib/cci-shim/blockfile; then umount /var/lib/cci-shim/blockfile; fi
exit "$rc"
