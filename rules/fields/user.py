"""user.* and group.*: the process's credentials, from the process record."""

from __future__ import annotations

from rules import record as R
from rules.fields.spec import CH, I64, U32, F, FieldSpec, proc

ROWS: tuple[FieldSpec, ...] = (
    FieldSpec("user.uid", U32, F.FEW_VALUES, "effective uid (p[P_UID])", proc(R.P_UID)),
    FieldSpec("user.name", CH, F.FEW_VALUES, "user name (p[P_USER])", proc(R.P_USER)),
    FieldSpec(
        "user.loginuid", I64, F.FEW_VALUES, "audit uid, -1 if unset (p[P_LOGINUID])", proc(R.P_LOGINUID)
    ),
    FieldSpec("user.loginname", CH, F.NONE, "audit user name (p[P_LOGINNAME])", proc(R.P_LOGINNAME)),
    FieldSpec("group.gid", U32, F.FEW_VALUES, "effective gid (p[P_GID])", proc(R.P_GID)),
    FieldSpec("group.name", CH, F.NONE, "group name (p[P_GROUP])", proc(R.P_GROUP)),
)
