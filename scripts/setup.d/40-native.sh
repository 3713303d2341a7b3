#!/usr/bin/env bash
# Builds the project's C extensions into $PEREGRINE_CACHE/native with the venv's interpreter: the
# rule engine's batch gate (rules/gate.c), the collector's ring reader and openat builder
# (collectors/ringread.c, collectors/openevent.c) and the worker's wire decoder (collectors/wiredecode.c),
# so a missing compiler or Python header shows up at setup rather than at first use (which builds
# them the same way when they are missing).
# Idempotent: the files are named by a hash of source, interpreter and compiler command, so a
# second run only checks that they exist.
set -euo pipefail
export PEREGRINE_CACHE=${PEREGRINE_CACHE:-$HOME/.cache/peregrine}
.venv/bin/python -c 'from rules import gate, native; print(native.build(gate.SOURCE))'
.venv/bin/python -c 'from collectors import native; print("\n".join(map(str, native.build_all())))'
.venv/bin/python -c 'from collectors import wire; from rules import native; print(native.build(wire.NATIVE_SOURCE))'
