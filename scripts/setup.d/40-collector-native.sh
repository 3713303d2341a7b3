#!/usr/bin/env bash
# Builds the collector's C extensions (collectors/ringread.c, collectors/openevent.c) into
# $PEREGRINE_CACHE/native with the venv's interpreter, so a missing compiler or Python header
# shows up at setup rather than at the first `peregrine collect` (which builds them the same way
# when they are missing). Idempotent: the files are named by a hash of source, interpreter and
# compiler command, so a second run only checks that they exist.
set -euo pipefail
export PEREGRINE_CACHE=${PEREGRINE_CACHE:-$HOME/.cache/peregrine}
.venv/bin/python -c 'from collectors import native; print("\n".join(map(str, native.build_all())))'
