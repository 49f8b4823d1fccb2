"""Redis users with the least rights each part of orderflow needs (Redis 7 ACL, selectors).

Four users besides the administrator (``default``):

- ``ingest`` appends to the market streams (each append checked against its lease) and the status stream, reads
  the positions (writing them back only with HSETNX when the hash was lost), listens to position changes, and keeps
  its own kind's leases and its heartbeat among the ingests;
- ``detector`` reads the market streams through its consumer group and writes alerts, exit recommendations
  (stream and channel), statuses, dead letters and its dedup keys, each output checked against its lease and
  confirmed by a replica when its master has one (``ROLE``, ``WAIT``); keeps its own kind's leases and
  its heartbeat among the detectors; reads profiles and positions;
- ``bot`` (the risk manager's client) reads exit recommendations through its group and the statuses, writes
  the positions and its own keys, and **cannot** add an exit recommendation to the stream or the channel —
  only the detector can make the bot act;
- ``dashboard`` (``orderflow dashboard``) only reads: the outputs, the market streams and their group's lag, the
  positions, the detectors' leases and members, the bots' marks. No write, no script.

The same rules serve a single server and a Redis Cluster: each output's pattern is granted under both layouts
(``orderflow:alerts`` and ``orderflow:{outputs}:alerts``), and the few commands a cluster client asks are granted
to every user (:data:`_CLUSTER`).

:func:`users_file` renders an ACL file (``redis-server --aclfile``) with SHA-256 password hashes, so the file
holds no password::

    user bot on #5e884898da28… resetkeys resetchannels -@all +hello +ping … ~orderflow:exits +xreadgroup …
"""

from __future__ import annotations

import hashlib

ROLES = ("ingest", "detector", "bot", "dashboard")

_CONNECTION = "+hello +auth +ping +client|setname +client|id +select"
_SCRIPTS = "+evalsha +eval +script|load +script|exists"  # Lua runs each command it calls under the same rights
_CLUSTER = "+cluster|info +cluster|slots +command +asking"
"""What the bus asks a cluster: ``CLUSTER INFO`` (is this a cluster? a single server answers that cluster support is
disabled), and redis-py's cluster client: the slots' nodes (``CLUSTER SLOTS``), the command table for the keys of a
command (``COMMAND``; its subcommands tell nothing more) and ``ASKING`` before a command it follows to a slot being
migrated. A single server needs none of them."""


def _names(prefix: str, *names: str, access: str = "~") -> str:
    """Key patterns of outputs under both layouts (:class:`~orderflow_client.bus.keys.Keys`): ``orderflow:alerts``
    on a single server, ``orderflow:{outputs}:alerts`` on a cluster (braces are literal in ACL patterns)."""
    return " ".join(f"{access}{prefix}{layout}:{name}" for name in names for layout in ("", ":{outputs}"))


def rules(role: str, prefix: str = "orderflow") -> str:
    """The ACL rules (after the password) of ``role`` for keys under ``prefix``, on a single server or a cluster.
    Each parenthesised selector is a separate grant: a command is allowed when one grant allows it with every key
    and channel it names."""
    market = f"{prefix}:md:{{*}}"  # the per-symbol market streams only (braces are literal in ACL patterns)
    positions = f"~{prefix}:positions +hgetall +hsetnx"
    base = f"{_CONNECTION} {_CLUSTER} {_SCRIPTS}"
    if role == "ingest":
        lease = f"~{prefix}:lease:ingest:{{*}}"  # in its symbol's slot on either layout
        return (
            f"{base} ~{market} {_names(prefix, 'status')} {lease} +xadd +xrevrange +xlen +get "
            f"+time &{prefix}:positions:changes +subscribe +unsubscribe "
            f"({_SCRIPTS} {lease} ~{prefix}:lease-tokens:ingest:{{*}} {_names(prefix, 'members:ingest')} +get +set "
            f"+incr +pexpire +del +zadd +zremrangebyscore +zrange +zrem) "
            f"({positions})"
        )
    if role == "detector":
        lease = _names(prefix, "lease:detector:*")
        outputs = _names(prefix, "alerts", "exits", "status", "published:*")
        return (
            f"{base} ~{market} +xreadgroup +xack +xgroup|create +xautoclaim +xclaim +xpending "
            f"+xinfo|groups +xinfo|stream +xrange +xrevrange +time +role +wait "
            f"({_SCRIPTS} ~{market}:dead {outputs} {lease} &{prefix}:exit-signals +xadd +set +publish +get) "
            f"({_SCRIPTS} {lease} {_names(prefix, 'lease-tokens', 'members:detector')} +get +set +incr +pexpire "
            f"+del +zadd +zremrangebyscore +zrange +zrem) "
            f"(%R~{prefix}:profile:* +get) "
            f"({positions})"
        )
    if role == "bot":
        return (
            f"{base} {_names(prefix, 'exits')} "
            "+xreadgroup +xack +xgroup|create +xautoclaim +xpending +xinfo|groups "
            f"+xrange +xrevrange &{prefix}:exit-signals +subscribe +unsubscribe "
            f"({_names(prefix, 'exits:dead')} +xadd) "
            f"({_names(prefix, 'status', 'alerts', access='%R~')} +xread +xrange +xrevrange) "
            f"(%R~{market} +xrevrange) "
            f"(~{prefix}:riskmanager:* +set +get +del +exists +watch +multi +exec +unwatch +discard) "
            f"(~{prefix}:positions &{prefix}:positions:changes +hset +hdel +hgetall +hsetnx +publish)"
        )
    if role == "dashboard":  # reads only: the streams, the registry, the detectors' leases, the bots' marks
        return (
            f"{_CONNECTION} {_CLUSTER} {_names(prefix, 'alerts', 'exits', 'status', access='%R~')} %R~{market} "
            f"{_names(prefix, 'lease:detector:*', 'members:detector', access='%R~')} "
            f"%R~{prefix}:positions %R~{prefix}:riskmanager:* "
            "+xread +xrange +xrevrange +xinfo|groups +xinfo|stream +hgetall +get +zrange +time"
        )
    raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")


def password_hash(password: str) -> str:
    """The form an ACL file stores a password in (``#`` + SHA-256, hex)."""
    return "#" + hashlib.sha256(password.encode()).hexdigest()


ENVIRONMENT = {
    "default": "REDIS_PASSWORD",
    "ingest": "REDIS_INGEST_PASSWORD",
    "detector": "REDIS_DETECTOR_PASSWORD",
    "bot": "REDIS_BOT_PASSWORD",
    "dashboard": "REDIS_DASHBOARD_PASSWORD",
}
"""Each user's password variable (compose's ``.env``)."""


def users_template(prefix: str = "orderflow") -> str:
    """The ACL file with ``@<user>@`` where each password's SHA-256 goes: compose's Redis fills them in from
    the environment at start (``config/redis-users.acl``), :func:`users_file` in Python."""
    lines = ["user default on #@default@ ~* &* +@all"]
    lines += [f"user {role} on #@{role}@ resetkeys resetchannels -@all {rules(role, prefix)}" for role in ROLES]
    return "\n".join(lines) + "\n"


def users_file(passwords: dict[str, str], admin_password: str, prefix: str = "orderflow") -> str:
    """An ACL file: ``default`` (every right, for operators and health checks) and one user per role; no
    password appears in it, only its hash."""
    text = users_template(prefix).replace("@default@", password_hash(admin_password)[1:])
    for role in ROLES:
        text = text.replace(f"@{role}@", password_hash(passwords[role])[1:])
    return text
