#!/usr/bin/env bash
# Tools of the chart tests in tests/integration/deploy, into $PEREGRINE_CACHE:
# - helm (version pinned below), built from the Go module proxy;
# - the Prometheus Operator's ServiceMonitor CRD, taken from that Go module's source (pinned), so
#   the API server can validate the chart's ServiceMonitor too.
# Idempotent: names carry the versions, so a second run only checks that the files exist. First
# helm build: a few minutes on 2 cores (most of its k8s.io dependencies are already in the module
# cache after 50-kube-apiserver.sh).
set -euo pipefail
HELM_VERSION=v3.22.0
HELM_K8S_MINOR=37  # the k8s.io modules helm $HELM_VERSION builds with (its Makefile's default)
PROMETHEUS_OPERATOR_VERSION=v0.85.0
export PEREGRINE_CACHE=${PEREGRINE_CACHE:-$HOME/.cache/peregrine}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "no Go toolchain (set GO=/path/to/go)" >&2; exit 1; }

out="$PEREGRINE_CACHE/helm-$HELM_VERSION-k8s1.$HELM_K8S_MINOR"
link="$PEREGRINE_CACHE/helm"
if [ -x "$out/helm" ]; then
  echo "helm $HELM_VERSION present: $out/helm"
else
  echo "building helm $HELM_VERSION"
  mkdir -p "$out.tmp"
  # `go install pkg@version` builds outside any enclosing module, pinned by helm's own go.sum; -p bounds memory
  # and leaves a core for everyone else.
  # The -X flags are those of helm's release Makefile: without them helm reports v0.0.0 and
  # assumes a Kubernetes 1.20 cluster when rendering offline.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in pkg/lint/rules pkg/chartutil; do
    ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  GOBIN="$out.tmp" CGO_ENABLED=0 "$GO" install -p "${GO_BUILD_P:-2}" -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
ln -sfn "$out/helm" "$link"
"$link" version --short

crd="$PEREGRINE_CACHE/crds/servicemonitors-$PROMETHEUS_OPERATOR_VERSION.yaml"
if [ ! -s "$crd" ]; then
  mkdir -p "$PEREGRINE_CACHE/crds"
  module=github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION
  dir=$(cd /tmp && "$GO" mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  install -m 0644 "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$crd.tmp"
  mv "$crd.tmp" "$crd"
fi
ln -sfn "$crd" "$PEREGRINE_CACHE/crds/servicemonitors.yaml"
echo "ServiceMonitor CRD $PROMETHEUS_OPERATOR_VERSION: $crd"
