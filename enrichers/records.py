"""The `peregrine.k8s` record: what one container or one service IP is, and its msgpack codec.

The topic is compacted, so the latest value per key is the state of the cluster:

* key ``<container id>`` (64 hex digits, as the collector reads it from cgroups, without the
  ``containerd://`` scheme) -> the container, its pod, namespace, labels, image and node;
* key ``svc:<cluster IP>`` -> the service name and its DNS name (``fd.sip.name``);
* value ``None`` (a tombstone) -> gone. The publisher sends it only after a grace period, so events
  that reach a worker late still find their container.

Values are msgpack maps with a schema version ``v``; decoders ignore keys they do not know, and
refuse versions newer than theirs. Encoding is deterministic (fixed key order, sorted labels), so
equal metadata gives equal bytes and the publisher can skip unchanged records by comparing bytes.

Pods arrive as the API server's JSON (dicts in camelCase), not as client model objects: that is
what the watch streams and it keeps this module free of the kubernetes package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgpack

from enrichers.errors import RecordError
from rules.record import (
    C_ID,
    C_IMAGE,
    C_IMAGE_DIGEST,
    C_IMAGE_REPO,
    C_IMAGE_TAG,
    C_MOUNTS,
    C_NAME,
    C_PRIVILEGED,
    C_START_TS,
    C_TYPE,
    CONTAINER_LEN,
    K_NS,
    K_POD_IP,
    K_POD_LABELS,
    K_POD_NAME,
    K_POD_UID,
    Container,
)

RECORD_VERSION: Final = 1
SERVICE_KEY_PREFIX: Final = b"svc:"
_KIND_CONTAINER: Final = "c"
_KIND_SERVICE: Final = "s"

# Kubernetes mountPropagation -> the propagation Falco prints in container.mounts
_PROPAGATION: Final = {"None": "private", "HostToContainer": "rslave", "Bidirectional": "rshared"}

Mount = tuple[str, str, str, bool, str]  # source, dest, mode, rw, propagation (Falco's order)


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    """One running (or recently running) container of a pod."""

    container_id: str
    runtime: str | None
    name: str
    image: str | None
    image_repository: str | None
    image_tag: str | None
    image_digest: str | None
    privileged: bool | None
    start_ts: int | None
    mounts: tuple[Mount, ...]
    namespace: str
    pod_name: str
    pod_uid: str
    labels: Mapping[str, str]
    pod_ip: str | None
    node: str | None


@dataclass(frozen=True, slots=True)
class ServiceMeta:
    """One cluster IP of a service and the DNS name that resolves to it."""

    ip: str
    name: str
    namespace: str
    dns_name: str


Meta = ContainerMeta | ServiceMeta


def container_key(container_id: str) -> bytes:
    return container_id.encode()


def service_key(ip: str) -> bytes:
    return SERVICE_KEY_PREFIX + ip.encode()


def is_service_key(key: bytes) -> bool:
    return key.startswith(SERVICE_KEY_PREFIX)


def key_of(meta: Meta) -> bytes:
    if isinstance(meta, ServiceMeta):
        return service_key(meta.ip)
    return container_key(meta.container_id)


# --- from the API's JSON ------------------------------------------------------------------------


def parse_container_id(status_id: str | None) -> tuple[str | None, str] | None:
    """``containerd://<hex>`` -> (``containerd``, ``<hex>``); None when the status has no id yet."""
    if not status_id:
        return None
    runtime, sep, cid = status_id.partition("://")
    if not sep:
        return None, status_id
    return runtime or None, cid


def parse_image(ref: str | None) -> tuple[str | None, str | None, str | None]:
    """Split an image reference into (repository, tag, digest), the way Falco's fields show them.

    The tag is what follows the last ``:`` after the last ``/`` (a registry port is not a tag);
    a reference with neither tag nor digest means ``latest``, as the runtime pulls it.
    """
    if not ref:
        return None, None, None
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        repo, tag = name[:colon], name[colon + 1 :]
    else:
        repo, tag = name, ("latest" if not digest else "")
    return repo, tag or None, digest or None


def _digest_of(image_id: str | None) -> str | None:
    if not image_id or "@" not in image_id:
        return None
    return image_id.rpartition("@")[2] or None


def _timestamp_ns(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp()) * 1_000_000_000
    except ValueError:
        return None


def _mounts(spec: Mapping[str, Any], volumes: Mapping[str, str]) -> tuple[Mount, ...]:
    return tuple(
        (
            volumes.get(m.get("name", ""), m.get("name", "")),
            m.get("mountPath", ""),
            "ro" if m.get("readOnly") else "",
            not m.get("readOnly", False),
            _PROPAGATION.get(m.get("mountPropagation") or "None", "private"),
        )
        for m in spec.get("volumeMounts") or ()
    )


def containers_from_pod(pod: Mapping[str, Any]) -> list[ContainerMeta]:
    """Every container of a pod that the runtime has given an id (init and ephemeral ones too).

    Containers still being created have no id and yield nothing: there is nothing to key them by,
    and no event can carry an id that the runtime has not assigned yet.
    """
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    specs: dict[str, Mapping[str, Any]] = {}
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(group) or ():
            specs[c.get("name", "")] = c
    # Falco shows the host path for hostPath volumes; other volumes are named as in the pod spec.
    volumes = {
        v.get("name", ""): v["hostPath"].get("path", "")
        for v in spec.get("volumes") or ()
        if isinstance(v.get("hostPath"), Mapping)
    }
    labels = dict(sorted((meta.get("labels") or {}).items()))
    out: list[ContainerMeta] = []
    for group in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for st in status.get(group) or ():
            parsed = parse_container_id(st.get("containerID"))
            if parsed is None:
                continue
            runtime, cid = parsed
            name = st.get("name", "")
            cspec = specs.get(name, {})
            image = st.get("image") or cspec.get("image")
            repo, tag, digest = parse_image(image)
            running = (st.get("state") or {}).get("running") or {}
            security = cspec.get("securityContext") or {}
            out.append(
                ContainerMeta(
                    container_id=cid,
                    runtime=runtime,
                    name=name,
                    image=image,
                    image_repository=repo,
                    image_tag=tag,
                    image_digest=digest or _digest_of(st.get("imageID")),
                    privileged=bool(security.get("privileged", False)),
                    start_ts=_timestamp_ns(running.get("startedAt")),
                    mounts=_mounts(cspec, volumes),
                    namespace=meta.get("namespace", ""),
                    pod_name=meta.get("name", ""),
                    pod_uid=meta.get("uid", ""),
                    labels=labels,
                    pod_ip=status.get("podIP") or None,
                    node=spec.get("nodeName") or None,
                )
            )
    return out


def services_from_service(svc: Mapping[str, Any], cluster_domain: str) -> list[ServiceMeta]:
    """One record per cluster IP (dual-stack services have two); headless services have none."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    name, ns = meta.get("name", ""), meta.get("namespace", "")
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    dns = f"{name}.{ns}.svc.{cluster_domain}"
    return [ServiceMeta(ip=ip, name=name, namespace=ns, dns_name=dns) for ip in ips if ip and ip != "None"]


# --- codec --------------------------------------------------------------------------------------


# (wire name, attribute) in wire order; the order is part of the deterministic encoding.
_SERVICE_FIELDS: Final = (("ip", "ip"), ("name", "name"), ("ns", "namespace"), ("dns", "dns_name"))
_CONTAINER_FIELDS: Final = (
    ("id", "container_id"),
    ("rt", "runtime"),
    ("name", "name"),
    ("image", "image"),
    ("repo", "image_repository"),
    ("tag", "image_tag"),
    ("digest", "image_digest"),
    ("priv", "privileged"),
    ("start", "start_ts"),
    ("mounts", "mounts"),
    ("ns", "namespace"),
    ("pod", "pod_name"),
    ("uid", "pod_uid"),
    ("labels", "labels"),
    ("ip", "pod_ip"),
    ("node", "node"),
)


def encode(meta: Meta) -> tuple[bytes, bytes]:
    """(key, value) for the topic; equal metadata always gives equal bytes."""
    service = isinstance(meta, ServiceMeta)
    value: dict[str, Any] = {"v": RECORD_VERSION, "k": _KIND_SERVICE if service else _KIND_CONTAINER}
    for wire, attr in _SERVICE_FIELDS if service else _CONTAINER_FIELDS:
        value[wire] = getattr(meta, attr)
    if isinstance(meta, ContainerMeta):
        value["mounts"] = [list(m) for m in meta.mounts]
        value["labels"] = dict(sorted(meta.labels.items()))
    return key_of(meta), msgpack.packb(value)


def decode(key: bytes, value: bytes | None) -> Meta | None:
    """The metadata a record carries, or None for a tombstone; RecordError names key and field."""
    if value is None:
        return None
    try:
        m = msgpack.unpackb(value)
    except (ValueError, msgpack.UnpackException) as e:
        raise RecordError(f"peregrine.k8s key {key!r}: value is not msgpack: {e}") from None
    if not isinstance(m, dict):
        raise RecordError(f"peregrine.k8s key {key!r}: value is a {type(m).__name__}, not a map")
    version = m.get("v")
    if not isinstance(version, int) or not 1 <= version <= RECORD_VERSION:
        raise RecordError(f"peregrine.k8s key {key!r}: field 'v': unsupported version {version!r}")
    kind = m.get("k")
    if kind not in (_KIND_SERVICE, _KIND_CONTAINER):
        raise RecordError(f"peregrine.k8s key {key!r}: field 'k': unknown kind {kind!r}")
    try:
        if kind == _KIND_SERVICE:
            return ServiceMeta(**{attr: m[wire] for wire, attr in _SERVICE_FIELDS})
        fields = {attr: m[wire] for wire, attr in _CONTAINER_FIELDS}
        fields["mounts"] = tuple((s, d, mode, bool(rw), p) for s, d, mode, rw, p in fields["mounts"])
        return ContainerMeta(**fields)
    except KeyError as e:
        raise RecordError(f"peregrine.k8s key {key!r}: field {e.args[0]!r} missing") from None
    except (TypeError, ValueError) as e:
        raise RecordError(f"peregrine.k8s key {key!r}: malformed field: {e}") from None


def to_container_record(meta: ContainerMeta) -> Container:
    """The positional container record (`rules.record` C_* and K_* slots) for this metadata."""
    rec: Container = [None] * CONTAINER_LEN
    rec[C_ID] = meta.container_id
    rec[C_NAME] = meta.name
    rec[C_IMAGE] = meta.image
    rec[C_IMAGE_REPO] = meta.image_repository
    rec[C_IMAGE_TAG] = meta.image_tag
    rec[C_IMAGE_DIGEST] = meta.image_digest
    rec[C_PRIVILEGED] = meta.privileged
    rec[C_START_TS] = meta.start_ts
    rec[C_MOUNTS] = [list(m) for m in meta.mounts]
    rec[C_TYPE] = meta.runtime
    rec[K_NS] = meta.namespace
    rec[K_POD_NAME] = meta.pod_name
    rec[K_POD_UID] = meta.pod_uid
    rec[K_POD_LABELS] = dict(meta.labels)
    rec[K_POD_IP] = meta.pod_ip
    return rec
