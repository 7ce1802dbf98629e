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
	iproute2
	util-linux
	gcc
	prometheus
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
