"""The key service: the only process that holds the OPRF key.

It evaluates batches of blinded elements with one batched DLEQ proof and publishes
its public key. It learns nothing about the inputs (they are blinded) and logs, per
calling organisation, how many elements it evaluated. It has no database.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

import grpc
import structlog

from exchange import crypto, log
from exchange.errors import (
    FailedPrecondition,
    InvalidInput,
    PermissionDenied,
    SamenloopError,
)
from exchange.rpc import request_id_from_metadata, status_for
from exchange.v1 import keyservice_pb2, keyservice_pb2_grpc
from hub._service import IdentityResolver

_log = log.get("keyservice")
ROLES = ("partner", "key_client", "privacy_officer")
_KEY_ID = re.compile(r"[0-9a-f]{16}")


class KeyService(keyservice_pb2_grpc.KeyServiceServicer):
    def __init__(self, key: crypto.OprfKey, identity: IdentityResolver) -> None:
        self._key = key
        self._identity = identity
        self._lock = threading.Lock()
        self.usage: Counter[str] = Counter()

    def _caller(self, context: grpc.ServicerContext) -> str:
        caller = self._identity(context)
        structlog.contextvars.bind_contextvars(
            request_id=request_id_from_metadata(context.invocation_metadata()),
            organisation=caller.organisation_id, role=caller.role)
        if caller.role not in ROLES:
            raise PermissionDenied(f"the role {caller.role} may not use the key service")
        return caller.organisation_id

    def _handle(self, context: grpc.ServicerContext, exc: SamenloopError) -> None:
        _log.info("request refused", code=status_for(exc).name, message=str(exc))
        context.abort(status_for(exc), str(exc))

    def GetPublicKey(self, request: Any,
                     context: grpc.ServicerContext) -> keyservice_pb2.GetPublicKeyResponse:
        try:
            self._caller(context)
            return keyservice_pb2.GetPublicKeyResponse(
                suite=crypto.OPRF_SUITE, public_key=self._key.public_key,
                key_id=self._key.key_id)
        except SamenloopError as exc:
            self._handle(context, exc)
            raise  # pragma: no cover - abort raises
        finally:
            structlog.contextvars.clear_contextvars()

    def Evaluate(self, request: keyservice_pb2.EvaluateRequest,
                 context: grpc.ServicerContext) -> keyservice_pb2.EvaluateResponse:
        try:
            org = self._caller(context)
            if request.key_id and not _KEY_ID.fullmatch(request.key_id):
                raise InvalidInput("key_id must be 16 lowercase hex characters")
            if request.key_id and request.key_id != self._key.key_id:
                raise FailedPrecondition(
                    f"key {request.key_id} is not the current key ({self._key.key_id}): "
                    "fetch the public key again")
            evaluated, proof = self._key.evaluate([bytes(b) for b in request.blinded_elements])
            with self._lock:
                self.usage[org] += len(evaluated)
                total = self.usage[org]
            _log.info("evaluated", elements=len(evaluated), total_for_organisation=total)
            return keyservice_pb2.EvaluateResponse(
                evaluated_elements=evaluated, proof=proof, key_id=self._key.key_id)
        except SamenloopError as exc:
            self._handle(context, exc)
            raise  # pragma: no cover - abort raises
        finally:
            structlog.contextvars.clear_contextvars()
