"""A "container" for the live tests: a cgroup laid out as containerd's under kubepods, the pod that
owns it in the real kube-apiserver, and a process tree (runc -> bash on a pty) placed in it.

Nothing here isolates anything: what the collector reports, and what Falco's rules match, is the
cgroup path (container id), the process names and tree, and the controlling terminal. That is the
part of `kubectl exec -it <pod> -- bash` these tests reproduce; the kubelet's and runc's work is not.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import termios
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector_actions import container_cgroup, new_encode_dev

MYSQL_IMAGE = "docker.io/library/mysql:8.4"


@dataclass
class Container:
    """A containerd-style cgroup with a fresh 64-hex id; `remove` deletes only its own directories."""

    workdir: Path
    container_id: str = field(default_factory=lambda: secrets.token_hex(32))
    pod_uid: str = ""
    cgroup: Path = Path()

    def create(self, pod_uid: str) -> Container:
        self.pod_uid = pod_uid
        self.cgroup = container_cgroup(self.container_id, pod_uid)
        return self

    def binary(self, name: str, source: str = "/bin/true") -> str:
        """A copy of `source` named `name` (rules match the process name, not the program)."""
        path = self.workdir / name
        shutil.copy(source, path)
        path.chmod(0o755)
        return str(path)

    def enter(self, script: str) -> list[str]:
        """argv of a process named runc that moves itself into the cgroup, then runs `script` as its
        child (the trailing `true` keeps sh from exec'ing the last command, so the parent stays runc)."""
        runc = self.binary("runc", "/bin/sh")
        return [runc, "-c", f"echo $$ > {self.cgroup}/cgroup.procs; {script}; true"]

    def remove(self) -> None:
        if self.cgroup == Path():
            return
        for directory in (self.cgroup, self.cgroup.parent):  # the container scope, then its pod slice
            try:
                directory.rmdir()
            except OSError:
                pass


def create_pod(core: Any, name: str, node: str, container_id: str) -> str:
    """A running pod in namespace default whose container `mysql` has `container_id` (set through the
    status subresource, as a kubelet would); returns the pod's uid."""
    core.create_namespaced_pod("default", {
        "metadata": {"name": name, "labels": {"app": "mysql"}},
        "spec": {"nodeName": node, "containers": [{"name": "mysql", "image": "mysql:8.4"}]},
    })
    core.patch_namespaced_pod_status(name, "default", {"status": {
        "phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
        "containerStatuses": [{
            "name": "mysql", "ready": True, "started": True, "restartCount": 0, "image": MYSQL_IMAGE,
            "imageID": "docker.io/library/mysql@sha256:" + "cd" * 32,
            "containerID": f"containerd://{container_id}",
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
        }],
    }})
    return str(core.read_namespaced_pod(name, "default").metadata.uid)


def pod_name() -> str:
    return f"mysql-db-{uuid.uuid4().hex[:10]}-{uuid.uuid4().hex[:5]}"


def run_on_pty(argv: list[str], typed: bytes, timeout: float = 60.0) -> int:
    """Run argv as a session leader whose controlling terminal is a new pty, with `typed` already
    waiting in the terminal's input (what a user would type); returns the terminal's tty_nr.
    The pty's output is drained so a chatty login shell never blocks on a full buffer."""
    master, slave = os.openpty()
    tty_nr = new_encode_dev(os.fstat(slave).st_rdev)
    os.write(master, typed)

    def take_tty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    def drain() -> None:
        try:
            while os.read(master, 4096):
                pass
        except OSError:  # EIO once the last slave descriptor is closed
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        subprocess.run(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                       preexec_fn=take_tty, timeout=timeout, check=True)
    finally:
        os.close(slave)
        reader.join(5)
        os.close(master)
    return tty_nr
