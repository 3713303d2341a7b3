"""`scripts/cluster up|down|status`: a node that keeps running after the command, its state in a
JSON file, stopped with the same code the tests use."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from devtools.localkube.node import STATE_FILE, Node
from devtools.localkube.procs import CACHE, KubeError, binary

DEFAULT_DIR = Path(os.environ.get("PEREGRINE_CLUSTER_DIR", "/var/lib/peregrine/cluster"))


def latest_image_archive() -> Path | None:
    """The newest archive scripts/image wrote (the tests call scripts/image for HEAD's)."""
    archives = sorted((CACHE / "image").glob("peregrine-*.oci.tar"), key=lambda p: p.stat().st_mtime)
    return archives[-1] if archives else None



def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster", description="a real single-node Kubernetes on this machine (root)")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("up", help="start it (keeps running after this command); no-op if it is up")
    up.add_argument("--image", type=Path, action="append", default=[],
                    help="OCI archive to import into containerd (default: the newest scripts/image archive)")
    for p in (up, sub.add_parser("down", help="stop it and remove what it made"), sub.add_parser("status")):
        p.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                       help=f"its files and logs (default {DEFAULT_DIR})")
        p.add_argument("--name", default="dev",
                       help="node peregrine-NAME, cgroups under /peregrine-NAME (default dev)")
    args = parser.parse_args(argv)
    root: Path = args.dir.resolve()
    try:
        if args.action == "up":
            return _up(root, args.name, args.image)
        if args.action == "down":
            return _down(root)
        return _status(root)
    except KubeError as exc:
        print(f"scripts/cluster {args.action}: {exc}", file=sys.stderr)
        return 1


def _up(root: Path, name: str, images: list[Path]) -> int:
    current = Node.load(root)
    if current is not None:
        if all(p.alive() for p in current.procs.values()) and current.ready():
            print(f"already up: node {current.node_name}; export KUBECONFIG={current.kubeconfig}")
            return 0
        print("a previous cluster is partly up: stopping it first")
        current.close()
    if not images:
        latest = latest_image_archive()
        images = [latest] if latest else []
    shutil.rmtree(root, ignore_errors=True)
    node = Node(name, root)
    try:
        node.up(images)
        node.save()
    except BaseException:
        node.close()
        raise
    print(f"node {node.node_name} Ready in {node.started_s:.1f}s (pods on {node.subnet}, "
          f"cgroups under {node.cgroup_root}, images: {', '.join(map(str, images)) or 'pause only'})")
    print(f"export KUBECONFIG={node.kubeconfig}")
    print(f"crictl: {binary('crictl')} --runtime-endpoint unix://{node.containerd_socket} ps")
    print("stop it with `scripts/cluster down`")
    return 0


def _down(root: Path) -> int:
    node = Node.load(root)
    if node is None:
        print(f"no cluster state in {root}: nothing to stop")
        return 0
    node.close()
    (root / STATE_FILE).unlink(missing_ok=True)
    print(f"cluster {node.node_name} stopped; logs kept in {root}")
    return 0


def _status(root: Path) -> int:
    node = Node.load(root)
    if node is None:
        print("cluster is down")
        return 3
    dead = [n for n, p in node.procs.items() if not p.alive()]
    if dead:
        print(f"cluster is partly down: {', '.join(dead)} not running (run `scripts/cluster down`)")
        return 1
    print(f"cluster is up: node {node.node_name} {'Ready' if node.ready() else 'NOT Ready'}; "
          f"KUBECONFIG={node.kubeconfig}")
    return 0

