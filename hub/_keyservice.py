"""The key service: the only process that holds the OPRF key.

It evaluates batches of blinded elements with one batched DLEQ proof and publishes
its public key. It learns nothing about the inputs (they are blinded) and logs, per
calling organisation, how many elements it evaluated. Each organisation has a rate
limit (a token bucket of blinded elements): an agent onboarding its caseload stays
within it, while a rogue agent trying to enumerate identities is slowed down to where
it would take years. It has no database.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import structlog

from exchange import crypto, log
from exchange.errors import (
    FailedPrecondition,
    InvalidInput,
    PermissionDenied,
    RateLimited,
    SamenloopError,
)
from exchange.rpc import request_id_from_metadata, status_for
from exchange.v1 import keyservice_pb2, keyservice_pb2_grpc
from hub import _ops
from hub._service import IdentityResolver

_log = log.get("keyservice")
ROLES = ("partner", "key_client", "privacy_officer")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class RateLimit:
    """A token bucket per organisation: ``per_minute`` elements a minute, ``burst`` at once."""

    def __init__(self, per_minute: int, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute < 1 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and burst")
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # org -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, organisation: str, count: int) -> float:
        """Take ``count`` tokens; 0.0 when granted, else the seconds to wait first."""
        with self._lock:
            now = self._clock()
            tokens, when = self._buckets.get(organisation, (self._burst, now))
            tokens = min(self._burst, tokens + (now - when) * self._rate)
            if count <= tokens:
                self._buckets[organisation] = (tokens - count, now)
                return 0.0
            self._buckets[organisation] = (tokens, now)
            return max(count - tokens, 1.0) / self._rate  # more than the burst: never

    @property
    def burst(self) -> int:
        return int(self._burst)

    def give_back(self, organisation: str, count: int) -> None:
        """Return tokens taken for a request that was then refused: bad input changes
        nothing, not even the caller's budget."""
        with self._lock:
            tokens, when = self._buckets.get(organisation, (self._burst, self._clock()))
            self._buckets[organisation] = (min(self._burst, tokens + count), when)


class KeyService(keyservice_pb2_grpc.KeyServiceServicer):
    def __init__(self, key: crypto.OprfKey, identity: IdentityResolver, *,
                 previous: crypto.OprfKey | None = None,
                 rate_per_minute: int = 120_000, burst: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if previous is not None and previous.key_id == key.key_id:
            raise ValueError("the previous key is the current key")
        self._key = key
        # During a rotation: the key being retired, evaluated only when asked for by id.
        self._previous = previous
        self._identity = identity
        self._lock = threading.Lock()
        self.usage: Counter[str] = Counter()
        self.limit = RateLimit(rate_per_minute, burst, clock)

    def _caller(self, context: grpc.ServicerContext) -> str:
        caller = self._identity(context)
        structlog.contextvars.bind_contextvars(
            request_id=request_id_from_metadata(context.invocation_metadata()),
            organisation=caller.organisation_id, role=caller.role)
        if caller.role not in ROLES:
            raise PermissionDenied(f"the role {caller.role} may not use the key service")
        return caller.organisation_id

    def _handle(self, context: grpc.ServicerContext, exc: SamenloopError, method: str) -> None:
        _ops.observe(method, status_for(exc).name)
        _log.info("request refused", code=status_for(exc).name, message=str(exc))
        context.abort(status_for(exc), str(exc))

    def GetPublicKey(self, request: Any,
                     context: grpc.ServicerContext) -> keyservice_pb2.GetPublicKeyResponse:
        try:
            self._caller(context)
            _ops.observe("keyservice.public_key", "OK")
            previous = self._previous
            return keyservice_pb2.GetPublicKeyResponse(
                suite=crypto.OPRF_SUITE, public_key=self._key.public_key,
                key_id=self._key.key_id,
                previous_public_key=previous.public_key if previous else b"",
                previous_key_id=previous.key_id if previous else "")
        except SamenloopError as exc:
            self._handle(context, exc, "keyservice.public_key")
            raise  # pragma: no cover - abort raises
        finally:
            structlog.contextvars.clear_contextvars()

    def Evaluate(self, request: keyservice_pb2.EvaluateRequest,
                 context: grpc.ServicerContext) -> keyservice_pb2.EvaluateResponse:
        started = time.perf_counter()
        try:
            org = self._caller(context)
            if request.key_id and not _KEY_ID.fullmatch(request.key_id):
                raise InvalidInput("key_id must be 16 lowercase hex characters")
            key = self._key
            if request.key_id and request.key_id != key.key_id:
                if self._previous is None or request.key_id != self._previous.key_id:
                    raise FailedPrecondition(
                        f"key {request.key_id} is not the current key ({key.key_id}): "
                        "fetch the public key again")
                key = self._previous
            if len(request.blinded_elements) > self.limit.burst:
                raise InvalidInput(  # not RateLimited: retrying would not help
                    f"a batch of {len(request.blinded_elements)} elements is more than the "
                    f"rate limit's burst ({self.limit.burst}): send smaller batches")
            wait = self.limit.take(org, len(request.blinded_elements))
            if wait:
                _ops.RATE_LIMITED.labels(org).inc()
                raise RateLimited(f"organisation {org} is over its rate limit of the key "
                                  f"service: retry in {wait:.1f} s")
            try:
                evaluated, proof = key.evaluate([bytes(b) for b in request.blinded_elements])
            except InvalidInput:
                self.limit.give_back(org, len(request.blinded_elements))
                raise
            with self._lock:
                self.usage[org] += len(evaluated)
                total = self.usage[org]
            _ops.EVALUATIONS.labels(org).inc(len(evaluated))
            _ops.observe("keyservice.evaluate", "OK", time.perf_counter() - started)
            _log.info("evaluated", elements=len(evaluated), total_for_organisation=total)
            return keyservice_pb2.EvaluateResponse(
                evaluated_elements=evaluated, proof=proof, key_id=key.key_id)
        except SamenloopError as exc:
            self._handle(context, exc, "keyservice.evaluate")
            raise  # pragma: no cover - abort raises
        finally:
            structlog.contextvars.clear_contextvars()
