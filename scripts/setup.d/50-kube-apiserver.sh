#!/usr/bin/env bash
# Builds the real kube-apiserver (version pinned in k8s/apiserver/go.mod) into $PEREGRINE_CACHE for
# the k8s-marked tests; etcd comes from Debian (etcd-server in scripts/apt-packages.txt).
# Idempotent: the binary's name carries a hash of the module's go.mod/go.sum/main.go and of the
# link flags, so a second run with the same pins only checks that the file exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PEREGRINE_CACHE=${PEREGRINE_CACHE:-$HOME/.cache/peregrine}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }

SRC=k8s/apiserver
VERSION=$(sed -n 's:^[[:space:]]*\(require[[:space:]]*\)\{0,1\}k8s\.io/kubernetes \(v[^ ]*\).*:\2:p' "$SRC/go.mod" | head -1)
[ -n "$VERSION" ] || { echo "$SRC/go.mod does not require k8s.io/kubernetes" >&2; exit 1; }
MINOR=$(echo "$VERSION" | cut -d. -f2)
# Without these the binary calls itself v0.0.0-master; /version should tell the truth.
V=k8s.io/component-base/version
LDFLAGS="-s -w -X $V.gitVersion=$VERSION -X $V.gitMajor=1 -X $V.gitMinor=$MINOR -X $V.gitTreeState=clean"
PIN=$( (cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go"; echo "$LDFLAGS") | sha256sum | cut -c1-12)
OUT="$PEREGRINE_CACHE/kube-apiserver-$VERSION-$PIN"
LINK="$PEREGRINE_CACHE/kube-apiserver"

if [ -x "$OUT" ]; then
  echo "kube-apiserver $VERSION present: $OUT"
else
  echo "building kube-apiserver $VERSION (about 7 min on 2 cores with empty Go caches, once per machine)"
  # -mod=mod lets the go command fill go.sum from the proxy if a pin changed; -p bounds memory and
  # leaves a core for everyone else.
  (cd "$SRC" && GOFLAGS=-mod=mod CGO_ENABLED=0 "$GO" build -p "${GO_BUILD_P:-2}" -trimpath \
     -ldflags "$LDFLAGS" -o "$OUT.tmp" .)
  mv "$OUT.tmp" "$OUT"
fi
ln -sfn "$OUT" "$LINK"
"$LINK" --version
