#!/usr/bin/env bash
# Builds helm (version pinned below) from the Go module proxy into $PEREGRINE_CACHE, for the chart
# tests in tests/integration/deploy. Idempotent: the binary's name carries the version, so a second
# run only checks that it exists. First build: a few minutes on 2 cores (most of its k8s.io
# dependencies are already in the module cache after 50-kube-apiserver.sh).
set -euo pipefail
HELM_VERSION=v3.22.0
export PEREGRINE_CACHE=${PEREGRINE_CACHE:-$HOME/.cache/peregrine}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }

out="$PEREGRINE_CACHE/helm-$HELM_VERSION"
link="$PEREGRINE_CACHE/helm"
if [ -x "$out/helm" ]; then
  echo "helm $HELM_VERSION present: $out/helm"
else
  echo "building helm $HELM_VERSION"
  mkdir -p "$out.tmp"
  # GOFLAGS=-mod=mod: `go install pkg@version` ignores any enclosing module; -p bounds memory
  # and leaves a core for everyone else.
  GOBIN="$out.tmp" CGO_ENABLED=0 "$GO" install -p "${GO_BUILD_P:-2}" -trimpath -ldflags "-s -w" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
ln -sfn "$out/helm" "$link"
"$link" version --short
