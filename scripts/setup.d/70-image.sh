#!/usr/bin/env bash
# Builds the container image (scripts/image) for HEAD into ~/.cache/peregrine/image, so the image
# tests (tests/image) find it: on a fresh machine about 6 minutes on 2 cores (two mmdebstrap runs of
# Debian bookworm, a wheelhouse from PyPI, the app layer), most of it once per package list.
# Here rather than in a test fixture because it needs the Debian mirror and PyPI, which setup
# fetches from anyway, and the test run has a budget of its own; the fixture still calls
# scripts/image, which rebuilds only the app layer (offline, about 1-2 minutes) when HEAD's
# packaged files changed and is a no-op otherwise.
# Idempotent: the archive is named by a hash of its inputs; a second run only checks it exists.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PEREGRINE_CACHE=${PEREGRINE_CACHE:-$HOME/.cache/peregrine}
archive=$(./scripts/image) || { echo "scripts/image failed (its message above names the step)" >&2; exit 1; }
echo "image: $archive ($(du -m "$archive" | cut -f1) MB)"
