"""The collector's C extensions, built and imported at start as bcc builds the probe (by
`rules.native`, cached): `ringread.c` (the ring buffer read in place) and `openevent.c` (openat
events built in C). A build failure raises ProbeError with the compiler's message: the collector
refuses to start, like a probe that does not compile.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Final

from collectors.errors import ProbeError
from rules import native

SOURCE: Final = Path(__file__).with_name("ringread.c")
OPENEVENT: Final = Path(__file__).with_name("openevent.c")


def build_all() -> list[Path]:
    """Every extension the collector loads (scripts/setup.d/40-native.sh calls this)."""
    try:
        return [native.build(SOURCE), native.build(OPENEVENT)]
    except native.NativeError as exc:
        raise ProbeError(str(exc)) from None


def load(name: str = "ringread", source: Path = SOURCE) -> ModuleType:
    """Build if needed and import the extension module `name` from `source`."""
    try:
        return native.load(name, source)
    except native.NativeError as exc:
        raise ProbeError(str(exc)) from None
