#!/usr/bin/env bash
# Builds what a real single-node Kubernetes needs besides etcd and kube-apiserver (50-kube-apiserver.sh)
# into $PEREGRINE_CACHE, for scripts/cluster and the node-marked tests (tests/cluster):
# - kubelet, kube-scheduler, kube-controller-manager, kube-proxy and kubectl from k8s.io/kubernetes at the
#   release kube-apiserver is pinned to (k8s/node/go.mod), so the version-skew policy holds
#   trivially and the Go build cache of kube-apiserver is reused (most packages are shared);
# - containerd v2 (daemon, ctr, the runc v2 shim) from the Go module proxy: kubelet 1.37 asks the
#   runtime for its cgroup driver (the RuntimeConfig CRI call), which Debian's containerd 1.6 does
#   not implement, and Kubernetes 1.35 was the last release that supports containerd 1.x;
# - crictl (cri-tools, same minor as Kubernetes), to compare the runtime's container ids with
#   the pod's status in the tests;
# - pause, the sandbox container's process, a static C program compiled here (there is no
#   registry to pull registry.k8s.io/pause from); scripts/cluster packs it into an OCI image.
# runc and the CNI plugins come from Debian (scripts/apt-packages.txt).
# Idempotent: every output's name carries a hash of its inputs, so a second run only checks files.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PEREGRINE_CACHE=${PEREGRINE_CACHE:-$HOME/.cache/peregrine}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }
CONTAINERD_VERSION=v2.4.2
CRI_TOOLS_VERSION=v1.37.0
P=${GO_BUILD_P:-2}   # bounds memory and leaves room for everyone else

SRC=k8s/node
VERSION=$(sed -n 's:^[[:space:]]*\(require[[:space:]]*\)\{0,1\}k8s\.io/kubernetes \(v[^ ]*\).*:\2:p' "$SRC/go.mod" | head -1)
[ -n "$VERSION" ] || { echo "$SRC/go.mod does not require k8s.io/kubernetes" >&2; exit 1; }
MINOR=$(echo "$VERSION" | cut -d. -f2)
V=k8s.io/component-base/version
LDFLAGS="-s -w -X $V.gitVersion=$VERSION -X $V.gitMajor=1 -X $V.gitMinor=$MINOR -X $V.gitTreeState=clean"
PIN=$( (cat "$SRC/go.mod" "$SRC/go.sum" "$SRC"/*/main.go; echo "$LDFLAGS") | sha256sum | cut -c1-12)
OUT="$PEREGRINE_CACHE/kube-node-$VERSION-$PIN"
CMDS=(kubelet kube-scheduler kube-controller-manager kube-proxy kubectl)
if [ -f "$OUT/.complete" ]; then
  echo "${CMDS[*]} $VERSION present: $OUT"
else
  echo "building ${CMDS[*]} $VERSION"
  rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
  # One go build for all: shared packages compile once. CGO off as for kube-apiserver:
  # upstream releases these static too.
  (cd "$SRC" && GOFLAGS=-mod=mod CGO_ENABLED=0 "$GO" build -p "$P" -trimpath -ldflags "$LDFLAGS" \
     -o "$OUT.tmp/" "${CMDS[@]/#/./}")
  touch "$OUT.tmp/.complete"
  rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
fi
for c in "${CMDS[@]}"; do ln -sfn "$OUT/$c" "$PEREGRINE_CACHE/$c"; done
"$PEREGRINE_CACHE/kubelet" --version

CTR_OUT="$PEREGRINE_CACHE/containerd-$CONTAINERD_VERSION"
if [ -f "$CTR_OUT/.complete" ]; then
  echo "containerd $CONTAINERD_VERSION present: $CTR_OUT"
else
  echo "building containerd $CONTAINERD_VERSION"
  rm -rf "$CTR_OUT.tmp" && mkdir -p "$CTR_OUT.tmp"
  m=github.com/containerd/containerd/v2
  # no_btrfs: the btrfs snapshotter needs cgo and libbtrfs headers, and overlayfs is what we use.
  # The version flags make `containerd --version` and the CRI's RuntimeVersion tell the truth.
  ldflags="-s -w -X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Package=$m"
  GOBIN="$CTR_OUT.tmp" CGO_ENABLED=0 "$GO" install -p "$P" -trimpath -tags no_btrfs -ldflags "$ldflags" \
    "$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/ctr@$CONTAINERD_VERSION" \
    "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
  touch "$CTR_OUT.tmp/.complete"
  rm -rf "$CTR_OUT" && mv "$CTR_OUT.tmp" "$CTR_OUT"
fi
ln -sfn "$CTR_OUT" "$PEREGRINE_CACHE/containerd"
"$CTR_OUT/containerd" --version

CRICTL="$PEREGRINE_CACHE/crictl-$CRI_TOOLS_VERSION"
if [ -x "$CRICTL/crictl" ]; then
  echo "crictl $CRI_TOOLS_VERSION present: $CRICTL/crictl"
else
  echo "building crictl $CRI_TOOLS_VERSION"
  rm -rf "$CRICTL.tmp" && mkdir -p "$CRICTL.tmp"
  GOBIN="$CRICTL.tmp" CGO_ENABLED=0 "$GO" install -p "$P" -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
  rm -rf "$CRICTL" && mv "$CRICTL.tmp" "$CRICTL"
fi
ln -sfn "$CRICTL/crictl" "$PEREGRINE_CACHE/crictl"
"$PEREGRINE_CACHE/crictl" --version

PAUSE_SRC=k8s/node/pause.c
PAUSE="$PEREGRINE_CACHE/pause-$(sha256sum "$PAUSE_SRC" | cut -c1-12)"
if [ ! -x "$PAUSE" ]; then
  gcc -Os -static -Wall -Werror -o "$PAUSE.tmp" "$PAUSE_SRC"
  strip "$PAUSE.tmp" && mv "$PAUSE.tmp" "$PAUSE"
fi
ln -sfn "$PAUSE" "$PEREGRINE_CACHE/pause"
echo "pause: $PAUSE"
