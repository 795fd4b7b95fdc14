"""Clients of the key service and the hub, with errors mapped once (exchange.rpc)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Self, TypeVar

import grpc

from exchange import rpc, tls
from exchange.v1 import (
    admin_pb2_grpc,
    audit_pb2_grpc,
    coordinator_pb2,
    coordinator_pb2_grpc,
    keyservice_pb2,
    keyservice_pb2_grpc,
    signal_pb2,
    signal_pb2_grpc,
)

T = TypeVar("T")
TIMEOUT = 60.0


class _Client:
    def __init__(self, target: str, caller: rpc.Caller, service: str,
                 client_tls: tls.ClientTls | None = None) -> None:
        self.target = target
        self._service = service
        if client_tls is not None:
            client_tls.check(caller)
        self._channel = rpc.channel(
            target, caller, client_tls.credentials() if client_tls is not None else None)

    def call(self, method: Callable[..., T], request: Any, timeout: float = TIMEOUT) -> T:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise rpc.error_for(exc, self._service) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HubUser:
    """A role's client of the hub: one channel, closed with the object."""

    def __init__(self, target: str, caller: rpc.Caller,
                 client_tls: tls.ClientTls | None = None) -> None:
        self.hub = HubClient(target, caller, client_tls)

    def close(self) -> None:
        self.hub.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class KeyServiceClient(_Client):
    def __init__(self, target: str, caller: rpc.Caller,
                 client_tls: tls.ClientTls | None = None) -> None:
        super().__init__(target, caller, f"the key service at {target}", client_tls)
        self._stub = keyservice_pb2_grpc.KeyServiceStub(self._channel)

    def public_key(self) -> keyservice_pb2.GetPublicKeyResponse:
        return self.call(self._stub.GetPublicKey, keyservice_pb2.GetPublicKeyRequest())

    def evaluator(self, key_id: str) -> Callable[[Sequence[bytes]], tuple[Sequence[bytes], bytes]]:
        """An evaluate function for exchange.crypto.pseudonymise, pinned to one key."""

        def evaluate(blinded: Sequence[bytes]) -> tuple[Sequence[bytes], bytes]:
            response = self.call(self._stub.Evaluate, keyservice_pb2.EvaluateRequest(
                blinded_elements=list(blinded), key_id=key_id))
            return list(response.evaluated_elements), response.proof

        return evaluate


class HubClient(_Client):
    """All hub services over one channel."""

    def __init__(self, target: str, caller: rpc.Caller,
                 client_tls: tls.ClientTls | None = None) -> None:
        super().__init__(target, caller, f"the hub at {target}", client_tls)
        self.signals = signal_pb2_grpc.SignalServiceStub(self._channel)
        self.coordinator = coordinator_pb2_grpc.CoordinatorServiceStub(self._channel)
        self.audit = audit_pb2_grpc.AuditServiceStub(self._channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self._channel)

    def submit_many(self, requests: Iterable[signal_pb2.SubmitSignalRequest],
                    timeout: float = 600.0) -> signal_pb2.SubmitSignalsResponse:
        return self.call(self.signals.SubmitSignals, iter(requests), timeout=timeout)

    def watch(self, after: int | None) -> Iterator[coordinator_pb2.AlertEvent]:
        """Stream alert changes after a cursor (None: from now on); ends quietly when this
        client is closed."""
        request = (coordinator_pb2.WatchAlertsRequest(from_now=True) if after is None
                   else coordinator_pb2.WatchAlertsRequest(after_cursor=after))
        try:
            stream = self.coordinator.WatchAlerts(request)
        except ValueError:  # the channel was closed
            return
        try:
            yield from stream
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.CANCELLED:
                return
            raise rpc.error_for(exc, self._service) from None
        finally:
            stream.cancel()
