"""GET a role's probe endpoint (``/readyz``, ``/livez``, ``/metrics``) on the loopback, as kubelet does."""

from __future__ import annotations

import urllib.error
import urllib.request


def probe(port: int, path: str) -> tuple[int, str]:
    """(status, body); (0, "") while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""
