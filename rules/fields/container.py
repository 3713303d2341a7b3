"""container.* and k8s.*: the enrichment record of the process's container (or all None)."""

from __future__ import annotations

from rules import record as R
from rules.fields.spec import ABS, BOOL, CH, IP, F, FieldSpec, proc
from rules.pyexpr import code

ROWS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "container.id", CH, F.FEW_VALUES, "12-char container id, or 'host' (p[P_CONTAINER_ID])",
        f"(None if p[{R.P_CONTAINER_ID}] is None else p[{R.P_CONTAINER_ID}][:12])",
    ),
    FieldSpec(
        "container.full_id", CH, F.NONE, "full container id (p[P_CONTAINER_ID])",
        proc(R.P_CONTAINER_ID),
    ),
    FieldSpec("container.name", CH, F.NONE, "container name (c[C_NAME])", f"c[{R.C_NAME}]"),
    FieldSpec("container.image", CH, F.NONE, "image reference (c[C_IMAGE])", f"c[{R.C_IMAGE}]"),
    FieldSpec(
        "container.image.repository", CH, F.NONE, "image repository (c[C_IMAGE_REPO])",
        f"c[{R.C_IMAGE_REPO}]",
    ),
    FieldSpec("container.image.tag", CH, F.NONE, "image tag (c[C_IMAGE_TAG])", f"c[{R.C_IMAGE_TAG}]"),
    FieldSpec(
        "container.image.digest", CH, F.NONE, "image digest (c[C_IMAGE_DIGEST])",
        f"c[{R.C_IMAGE_DIGEST}]",
    ),
    FieldSpec(
        "container.type", CH, F.NONE, "runtime: containerd, cri-o, docker (c[C_TYPE])",
        f"c[{R.C_TYPE}]",
    ),
    FieldSpec(
        "container.privileged", BOOL, F.FEW_VALUES, "runs privileged (c[C_PRIVILEGED])",
        f"c[{R.C_PRIVILEGED}]",
    ),
    FieldSpec("container.start_ts", ABS, F.NONE, "container start, ns (c[C_START_TS])", f"c[{R.C_START_TS}]"),
    FieldSpec(
        "container.mounts", CH, F.NONE, "source:dest:mode:rw:propagation, comma-separated",
        f"_mounts(c[{R.C_MOUNTS}])",
    ),
    FieldSpec(
        "container.mount.dest", CH, F.ARG_REQUIRED,
        "destination of the mount whose source matches [glob] or [N]",
        lambda arg, t: code(f"_mount_dest(c[{R.C_MOUNTS}], PATTERN)", PATTERN=arg),
    ),
    FieldSpec("k8s.ns.name", CH, F.FEW_VALUES, "Kubernetes namespace (c[K_NS])", f"c[{R.K_NS}]"),
    FieldSpec("k8s.pod.name", CH, F.NONE, "pod name (c[K_POD_NAME])", f"c[{R.K_POD_NAME}]"),
    FieldSpec("k8s.pod.uid", CH, F.NONE, "pod uid (c[K_POD_UID])", f"c[{R.K_POD_UID}]"),
    FieldSpec("k8s.pod.ip", IP, F.NONE, "pod IP (c[K_POD_IP])", f"c[{R.K_POD_IP}]"),
    FieldSpec(
        "k8s.pod.label", CH, F.ARG_REQUIRED, "value of pod label [key] (c[K_POD_LABELS])",
        lambda arg, t: code(f"(c[{R.K_POD_LABELS}] or {{}}).get(KEY)", KEY=arg),
    ),
)

