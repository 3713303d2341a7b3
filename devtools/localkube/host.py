"""What a node changes on the machine outside its own directory, and takes back when it stops:
the kernel settings a kubelet sets, cgroup roots, mounts, the shims containerd leaves, iptables
chains and the paths a kubelet or CNI use whatever they are told. Several nodes (test sessions)
may share the machine: what is the machine's is undone by the last node to stop."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from devtools.localkube.procs import CACHE, KubeError, binary

# What the kubelet sets when it starts (setupKernelTunables in pkg/kubelet/cm, "modify" unless
# protectKernelDefaults) plus what the CNI bridge plugin sets for a gateway; saved and restored.
SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
)
SYSCTLS_SAVED = Path("/run/peregrine/sysctls.json")


def route_src() -> str:
    """The address the kubelet registers (the node's InternalIP): the source of the default route.
    Not loopback, which the kubelet refuses, and reachable by the API server on this machine."""
    out = subprocess.run(["ip", "-4", "-j", "route", "get", "192.0.2.255"], capture_output=True, text=True,
                         check=False)
    try:
        return str(json.loads(out.stdout)[0]["prefsrc"])
    except (ValueError, LookupError) as exc:
        raise KubeError(f"no IPv4 default route to take the node's address from: {out.stderr}") from exc


def free_subnet(seed: str) -> str:
    """A /24 in 10.244.0.0/16 that no route of this machine covers yet (another node's bridge)."""
    out = subprocess.run(["ip", "-4", "-j", "route", "show"], capture_output=True, text=True, check=False)
    used = []
    for r in json.loads(out.stdout or "[]"):
        if r.get("dst", "default") != "default":
            used.append(ipaddress.ip_network(r["dst"], strict=False))
    start = int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 200
    for i in range(200):
        net = ipaddress.ip_network(f"10.244.{(start + i) % 200 + 20}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)
    raise KubeError("no free /24 in 10.244.0.0/16 for the pod network")


def cgroup_mounts() -> list[Path]:
    """Every cgroup hierarchy mounted under /sys/fs/cgroup (v1 controllers and the v2 one)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split(" ", 1)[0] in ("cgroup", "cgroup2"):
            mounts.append(Path(left.split()[4]))
    return mounts


def other_running(name: str) -> bool:
    """Is a `name` we built running (another node's; ours is stopped when this is asked)?"""
    names = {str(CACHE / name).encode(), str((CACHE / name).resolve()).encode()}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().split(b"\0", 1)[0] in names:
                return True
    return False


def save_sysctls() -> dict[str, str]:
    """The machine's values, kept once for all nodes in /run/peregrine: a second node starting
    while a first runs would otherwise save what the first one's kubelet set."""
    if SYSCTLS_SAVED.exists():
        saved: dict[str, str] = json.loads(SYSCTLS_SAVED.read_text())
        return saved
    values = {k: Path("/proc/sys", k).read_text().strip() for k in SYSCTLS}
    SYSCTLS_SAVED.parent.mkdir(parents=True, exist_ok=True)
    SYSCTLS_SAVED.write_text(json.dumps(values))
    return values


def restore_sysctls() -> None:
    """By the last node to stop: the others' kubelets still rely on the values."""
    if other_running("kubelet") or not SYSCTLS_SAVED.exists():
        return
    for key, value in json.loads(SYSCTLS_SAVED.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)
    SYSCTLS_SAVED.unlink(missing_ok=True)


def mount_tmpfs(d: Path) -> None:
    """A tmpfs at `d`, for containerd's root (image content and unpacked layers, ~0.5 GB with the
    project's image): this machine's disk is mounted with online discard, where deleting the
    unpacked image's files took 40 s; unmounting a tmpfs takes none, and the import is faster."""
    d.mkdir(parents=True, exist_ok=True)
    if not os.path.ismount(d):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g,mode=0700", "tmpfs", str(d)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KubeError(f"cannot mount a tmpfs for containerd at {d}: {done.stderr}")


def make_cgroup_root(cgroup_root: str) -> None:
    # the kubelet requires its cgroupRoot to exist in every hierarchy; cpuset children start
    # empty and take no tasks until cpus and mems are set, so copy the parent's
    for mount in cgroup_mounts():
        d = mount / cgroup_root.lstrip("/")
        d.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (d / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((mount / f).read_text())


def kill_shims(containerd_socket: Path) -> None:
    """A shim outlives containerd by design; ours are the ones started with our socket."""
    needle = str(containerd_socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and needle in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def unmount_under(*dirs: Path) -> None:
    """Every mount below `dirs`, the deepest first (lazily if it is busy)."""
    prefixes = tuple(f"{d}/" for d in dirs)
    for _ in range(3):
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        ours = sorted({m for m in mounts if m.startswith(prefixes)}, key=len, reverse=True)
        if not ours:
            return
        for m in ours:
            if subprocess.run(["umount", m], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", m], capture_output=True, check=False)


def remove_cgroups(cgroup_root: str) -> None:
    for mount in cgroup_mounts():
        top = mount / cgroup_root.lstrip("/")
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                        reverse=True) + [top]:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # only our containers' processes can be in our cgroups; none may remain
                    with contextlib.suppress(OSError, ValueError):
                        for pid in (d / "cgroup.procs").read_text().split():
                            os.kill(int(pid), signal.SIGKILL)
                    time.sleep(0.1)


def remove_fixed_paths() -> None:
    """What a kubelet and CNI make at fixed paths, whatever their directories are: the device
    plugin socket (/var/lib/kubelet/device-plugins/kubelet.sock, a constant) and libcni's
    result cache. Removed when no other kubelet runs on the machine."""
    if other_running("kubelet"):
        return
    with contextlib.suppress(OSError):
        Path("/var/lib/kubelet/device-plugins/kubelet.sock").unlink()
    for d in ("/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/lib/cni/results",
              "/var/lib/cni"):
        with contextlib.suppress(OSError):
            Path(d).rmdir()  # only if empty: a real kubelet's files are not ours


def remove_proxy_rules(started_here: bool) -> None:
    """kube-proxy's iptables chains are the machine's, not the node's: removed (`kube-proxy
    --cleanup`) when no other node's kube-proxy runs. Two nodes at once share them, and each
    kube-proxy rewrites them whole: the second node's Services win."""
    if not started_here or other_running("kube-proxy"):
        return
    subprocess.run([str(binary("kube-proxy")), "--cleanup"], capture_output=True, check=False, timeout=60)


def remove_kubelet_rules() -> None:
    """Every kubelet makes the same iptables chains, machine-wide, and never removes them: the
    KUBE-IPTABLES-HINT and KUBE-KUBELET-CANARY chains, and KUBE-FIREWALL, which drops packets
    to 127.0.0.0/8 from other sources, jumped to from INPUT and OUTPUT. Removed by the last node
    to stop, for IPv4 and IPv6."""
    if other_running("kubelet"):
        return
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        steps = [["-t", "filter", "-D", "INPUT", "-j", "KUBE-FIREWALL"],
                 ["-t", "filter", "-D", "OUTPUT", "-j", "KUBE-FIREWALL"],
                 ["-t", "filter", "-F", "KUBE-FIREWALL"], ["-t", "filter", "-X", "KUBE-FIREWALL"],
                 ["-t", "mangle", "-X", "KUBE-IPTABLES-HINT"]]
        steps += [["-t", table, "-X", "KUBE-KUBELET-CANARY"] for table in ("mangle", "nat", "filter")]
        for step in steps:  # a chain or rule that is not there is fine
            subprocess.run([tool, "-w", *step], capture_output=True, check=False)


def remove_container_log_links(logs: Path) -> None:
    # the kubelet links every container's log into /var/log/containers (a fixed path)
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(logs)):
                    link.unlink()
