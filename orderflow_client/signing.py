"""Authentic exit recommendations: an HMAC over the recommendation, so that only a holder of the signing key
(the detector) can make the bot act, not anything that can write to Redis.

The detector signs each recommendation it publishes with ``ORDER_FLOW_SIGNING_KEY`` (a secret from the
environment) under ``ORDER_FLOW_SIGNING_KEY_ID``; the bot's client verifies it with the same key::

    signature = HMAC-SHA256(key, canonical JSON of the recommendation with ``signature`` empty)

The canonical form holds every field, the key id and the signing time (``signed_ns``, ns since the epoch)
included, so none can be changed without the key. A recommendation signed longer ago than the replay window
(``ORDER_FLOW_SIGNATURE_MAX_AGE_SECONDS``) is refused as expired: an old genuine recommendation replayed later
is as dangerous as a forged one. A sample signed recommendation's fields::

    key_id="k1", signed_ns=1780324815123456789, signature="3f0c…e9" (64 hex digits)
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

import msgspec

from orderflow_client.wire import ExitRecommendation

Verdict = Literal["authentic", "unsigned", "unknown_key", "forged", "expired"]


def _canonical(recommendation: ExitRecommendation) -> bytes:
    return msgspec.json.encode(msgspec.structs.replace(recommendation, signature="", latency_ms=0.0))


def sign(recommendation: ExitRecommendation, key: bytes, key_id: str, now_ns: int) -> ExitRecommendation:
    """``recommendation`` signed at ``now_ns`` with ``key`` (its ``latency_ms`` is not covered: set on delivery)."""
    stamped = msgspec.structs.replace(recommendation, key_id=key_id, signed_ns=now_ns, signature="")
    return msgspec.structs.replace(stamped, signature=hmac.new(key, _canonical(stamped), hashlib.sha256).hexdigest())


def verify(recommendation: ExitRecommendation, keys: dict[str, bytes], now_ns: int, max_age_ns: int) -> Verdict:
    """Whether ``recommendation`` was signed by a holder of one of ``keys`` (key id → key) within ``max_age_ns``."""
    if not recommendation.signature:
        return "unsigned"
    key = keys.get(recommendation.key_id)
    if key is None:
        return "unknown_key"
    expected = hmac.new(key, _canonical(recommendation), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, recommendation.signature):
        return "forged"
    if abs(now_ns - recommendation.signed_ns) > max_age_ns:
        return "expired"
    return "authentic"
