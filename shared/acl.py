"""Redis users with the least rights each part of orderflow needs (Redis 7 ACL, selectors).

Three users besides the administrator (``default``):

- ``ingest`` appends to the market streams (each append checked against its lease) and the status stream, reads
  the positions (writing them back only with HSETNX when the hash was lost), listens to position changes, and keeps
  its leases and its heartbeat among the ingests;
- ``detector`` reads the market streams through its consumer group and writes alerts, exit recommendations
  (stream and channel), statuses, dead letters and its dedup keys, each output checked against its lease; keeps
  its leases and its heartbeat among the detectors; reads profiles and positions;
- ``bot`` (the risk manager's client) reads exit recommendations through its group and the statuses, writes
  the positions and its own keys, and **cannot** add an exit recommendation to the stream or the channel —
  only the detector can make the bot act.

:func:`users_file` renders an ACL file (``redis-server --aclfile``) with SHA-256 password hashes, so the file
holds no password::

    user bot on #5e884898da28… resetkeys resetchannels -@all +hello +ping … ~orderflow:exits +xreadgroup …
"""

from __future__ import annotations

import hashlib

ROLES = ("ingest", "detector", "bot")

_CONNECTION = "+hello +auth +ping +client|setname +client|id +select"
_SCRIPTS = "+evalsha +eval +script|load +script|exists"  # Lua runs each command it calls under the same rights


def rules(role: str, prefix: str = "orderflow") -> str:
    """The ACL rules (after the password) of ``role`` for keys under ``prefix``. Each parenthesised selector
    is a separate grant: a command is allowed when one grant allows it with every key and channel it names."""
    market = f"{prefix}:md:{{*}}"  # the per-symbol market streams only (braces are literal in ACL patterns)
    positions = f"~{prefix}:positions +hgetall +hsetnx"
    if role == "ingest":
        return (
            f"{_CONNECTION} {_SCRIPTS} ~{market} ~{prefix}:status ~{prefix}:lease:ingest:* +xadd +xrevrange +xlen +get "
            f"+time &{prefix}:positions:changes +subscribe +unsubscribe "
            f"({_SCRIPTS} ~{prefix}:lease:ingest:* ~{prefix}:lease-tokens:ingest:* ~{prefix}:members:ingest +get +set "
            f"+incr +pexpire +del +zadd +zremrangebyscore +zrange +zrem) "
            f"({positions})"
        )
    if role == "detector":
        return (
            f"{_CONNECTION} {_SCRIPTS} ~{market} +xreadgroup +xack +xgroup|create +xautoclaim +xclaim +xpending "
            f"+xinfo|groups +xinfo|stream +xrange +xrevrange +time "
            f"({_SCRIPTS} ~{market}:dead ~{prefix}:alerts ~{prefix}:exits ~{prefix}:status ~{prefix}:published:* "
            f"~{prefix}:lease:* &{prefix}:exit-signals +xadd +set +publish +get) "
            f"({_SCRIPTS} ~{prefix}:lease:* ~{prefix}:lease-tokens ~{prefix}:members:* +get +set +incr +pexpire +del "
            f"+mget +zadd +zremrangebyscore +zrange +zrem) "
            f"(%R~{prefix}:profile:* +get) "
            f"({positions})"
        )
    if role == "bot":
        return (
            f"{_CONNECTION} {_SCRIPTS} ~{prefix}:exits "
            "+xreadgroup +xack +xgroup|create +xautoclaim +xpending +xinfo|groups "
            f"+xrange +xrevrange &{prefix}:exit-signals +subscribe +unsubscribe "
            f"(~{prefix}:exits:dead +xadd) "
            f"(%R~{prefix}:status %R~{prefix}:alerts +xread +xrange +xrevrange) "
            f"(%R~{market} +xrevrange) "
            f"(~{prefix}:riskmanager:* +set +get +del +exists) "
            f"(~{prefix}:positions &{prefix}:positions:changes +hset +hdel +hgetall +hsetnx +publish)"
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
