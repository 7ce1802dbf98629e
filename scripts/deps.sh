#!/usr/bin/env bash
# Installs what cci-shim needs to build, test and run its demo on a Debian
# host: Debian packages, and containerd's binaries at a pinned version in a
# project-local tools dir. Idempotent: a second run only checks and exits.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${CCI_TOOLS_DIR:-$root/.tools/bin}"

# One package a line, so that additions merge cleanly.
packages=(
	runc
	xfsprogs
	e2fsprogs
	busybox-static
	fio
	containernetworking-plugins
	runsc
	iproute2
	util-linux
	gcc
	prometheus
	libc6-dev
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$tools/.containerd-$CONTAINERD_VERSION"
if [ ! -f "$stamp" ] || [ ! -x "$tools/containerd" ] || [ ! -x "$tools/ctr" ] || [ ! -x "$tools/containerd-shim-runc-v2" ]; then
	echo "deps: building containerd $CONTAINERD_VERSION into $tools (about 2 minutes)"
	mkdir -p "$tools"
	GOBIN="$tools" GOFLAGS=-buildvcs=false go install \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
	rm -f "$tools"/.containerd-*
	touch "$stamp"
fi

# crictl: the CRI client operators use; the demo and the tests drive pods with it.
stamp="$tools/.crictl-$CRICTL_VERSION"
if [ ! -f "$stamp" ] || [ ! -x "$tools/crictl" ]; then
	echo "deps: building crictl $CRICTL_VERSION into $tools"
	mkdir -p "$tools"
	GOBIN="$tools" GOFLAGS=-buildvcs=false go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	rm -f "$tools"/.crictl-*
	touch "$stamp"
fi

# gVisor: Debian's runsc (20221219) mistakes every network namespace for the
# host's on Linux 6.6+ (fixed in gVisor 20240731), so pods there cannot have
# their CNI network. Such hosts also get a static runsc from the Go module
# proxy in the tools dir, which the tests prefer (CGO off: runsc re-executes
# itself where no dynamic loader is).
RUNSC_VERSION="${RUNSC_VERSION:-v0.0.0-20260905035102-160fafc42237}"
if unshare --net test -e /proc/sys/net/core/rmem_default 2>/dev/null && [ ! -f "$tools/.runsc-$RUNSC_VERSION" ]; then
	echo "deps: building runsc $RUNSC_VERSION into $tools (Debian's cannot use pod network namespaces on this kernel)"
	mkdir -p "$tools"
	CGO_ENABLED=0 GOBIN="$tools" GOFLAGS=-buildvcs=false go install "gvisor.dev/gvisor/runsc@$RUNSC_VERSION"
	rm -f "$tools"/.runsc-*
	touch "$tools/.runsc-$RUNSC_VERSION"
fi
