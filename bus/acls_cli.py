"""`peregrine kafka acls`: print a role's ACL bindings as kafka-acls.sh commands, or apply them.

``--apply`` creates them through the admin API with the connection flags of `bus.connection` (an
identity allowed to alter ACLs: a super user). The bindings themselves come from `bus.acls` only.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Final

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from bus import acls, connection
from bus.clients import librdkafka_config
from bus.errors import BusError

_TIMEOUT_S: Final = 30.0
_RESOURCE: Final = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
                    "transactional_id": ResourceType.TRANSACTIONAL_ID}  # fmt: skip
_PATTERN: Final = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
_OPERATION: Final = {
    "Read": AclOperation.READ, "Write": AclOperation.WRITE, "Create": AclOperation.CREATE,
    "Describe": AclOperation.DESCRIBE, "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS,
}  # fmt: skip


def admin_binding(binding: acls.Binding, principal: str) -> AclBinding:
    return AclBinding(_RESOURCE[binding.resource_type], binding.name, _PATTERN[binding.pattern], principal,
                      "*", _OPERATION[binding.operation], AclPermissionType.ALLOW)  # fmt: skip


def apply(conn: connection.KafkaConnection, role: str, principal: str, **names: str) -> int:
    """Create the role's bindings for ``principal``; BusError naming the first one refused."""
    wanted = [admin_binding(b, principal) for b in acls.bindings(role, **names)]
    admin = AdminClient(librdkafka_config(conn))
    for binding, future in admin.create_acls(wanted, request_timeout=_TIMEOUT_S).items():
        try:
            future.result(_TIMEOUT_S)
        except KafkaException as e:
            raise BusError(f"ACL {binding}: refused by Kafka at {conn.servers}: {e.args[0].str()}") from None
    return len(wanted)


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="peregrine kafka acls", description=__doc__)
    p.add_argument("--role", required=True, choices=acls.ROLES)
    p.add_argument("--principal", required=True, help="e.g. User:peregrine-collector")
    p.add_argument("--worker-app-id", default=acls.WORKER_APP_ID)
    p.add_argument("--sink-group-prefix", default=acls.SINK_GROUP_PREFIX)
    p.add_argument("--apply", action="store_true", help="create them through the admin API")
    connection.add_arguments(p)
    args = p.parse_args(list(argv))
    names = {"worker_app_id": args.worker_app_id, "sink_group_prefix": args.sink_group_prefix}
    if not args.principal.startswith("User:"):
        print(f"peregrine kafka acls: --principal {args.principal[:80]!r} must start with 'User:'",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.apply:
        try:
            count = apply(connection.from_args(args), args.role, args.principal, **names)
        except BusError as exc:
            print(f"peregrine kafka acls: {exc}", file=sys.stderr)
            return 1
        print(f"{count} ACL bindings for {args.principal} ({args.role}) in place")
        return 0
    servers = connection.from_args(args).servers
    for b in acls.bindings(args.role, **names):
        command = acls.kafka_acls_command(b, args.principal)
        print(shlex.join(["kafka-acls.sh", "--bootstrap-server", servers, *command]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
