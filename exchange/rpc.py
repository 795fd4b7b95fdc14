"""What every party needs at the gRPC edge.

* the one mapping between Samenloop errors and gRPC status codes (both directions);
* the caller's identity (organisation, user, role) and request id as call metadata;
* Timestamp <-> datetime conversion;
* channels to a service.

Identity in metadata is the development transport: a server accepts it only on a
loopback address (see hub._server). Production identity comes from client certificates
(exchange.tls).
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from exchange import errors, vocab

ORGANISATION_HEADER = "samenloop-organisation"
USER_HEADER = "samenloop-user"
ROLE_HEADER = "samenloop-role"
USER_NAME_HEADER = "samenloop-user-name"  # percent-encoded UTF-8
REQUEST_ID_HEADER = "samenloop-request-id"
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

_STATUS: list[tuple[type[errors.SamenloopError], grpc.StatusCode]] = [
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.VerificationError, grpc.StatusCode.DATA_LOSS),
    (errors.IntegrityError, grpc.StatusCode.DATA_LOSS),
]
_ERROR_BY_STATUS: dict[grpc.StatusCode, type[errors.SamenloopError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidInput,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidInput,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.RateLimited,
    grpc.StatusCode.DATA_LOSS: errors.IntegrityError,
}


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The status code a server answers with for an exception."""
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def error_for(exc: grpc.RpcError, service: str) -> errors.SamenloopError:
    """The Samenloop error a client raises for a failed call."""
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    detail = (exc.details() if isinstance(exc, grpc.Call) else None) or code.name.lower()
    if code is grpc.StatusCode.UNAVAILABLE:
        return errors.Unavailable(f"{service} is unavailable: {detail}")
    cls = _ERROR_BY_STATUS.get(code, errors.SamenloopError)
    return cls(f"{service}: {detail}")


# -- identity -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: an organisation, a user within it, and a role."""

    organisation_id: str
    user_id: str
    role: str
    # The user's display name for the access log (defaults to the user id).
    name: str = ""

    def __post_init__(self) -> None:
        vocab.slug(self.organisation_id, "organisation id")
        vocab.text(self.user_id, "user id", max_len=128)
        vocab.text(self.name, "user name", max_len=200, required=False)
        if self.role not in vocab.ROLES:
            raise errors.InvalidInput(f"role must be one of {', '.join(vocab.ROLES)}")

    @property
    def display_name(self) -> str:
        return self.name or self.user_id

    def metadata(self) -> list[tuple[str, str]]:
        headers = [
            (ORGANISATION_HEADER, self.organisation_id),
            (USER_HEADER, self.user_id),
            (ROLE_HEADER, self.role),
        ]
        if self.name:
            headers.append((USER_NAME_HEADER, urllib.parse.quote(self.name)))
        return headers


def caller_from_metadata(metadata: Any) -> Caller:
    """Read the development identity headers; Unauthenticated when absent or malformed."""
    values = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    try:
        return Caller(
            organisation_id=values[ORGANISATION_HEADER],
            user_id=values[USER_HEADER],
            role=values[ROLE_HEADER],
            name=urllib.parse.unquote(values.get(USER_NAME_HEADER, ""), errors="strict"),
        )
    except (KeyError, UnicodeDecodeError, errors.InvalidInput) as exc:
        raise errors.Unauthenticated("the caller's identity is missing or malformed") from exc


def request_id_from_metadata(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str):
            try:
                return vocab.uuid_str(value, "request id")
            except errors.InvalidInput:
                break
    return str(uuid.uuid4())


# -- time ---------------------------------------------------------------------------


def to_timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(ts: Timestamp, field: str) -> datetime | None:
    """An unset (zero) Timestamp is None; an out-of-range one is InvalidInput."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise errors.InvalidInput(f"{field} is not a valid timestamp") from exc


# -- channels -----------------------------------------------------------------------


class _IdentityInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Adds a fresh request id to every call and, without TLS, the caller's identity."""

    def __init__(self, caller: Caller | None) -> None:
        self._headers = caller.metadata() if caller is not None else []

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), *self._headers]
        metadata.append((REQUEST_ID_HEADER, str(uuid.uuid4())))
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials,
            details.wait_for_ready, details.compression,
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any,
                               request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any,
                               request_iterator: Iterator[Any]) -> Any:
        return continuation(self._details(details), request_iterator)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


def channel(target: str, caller: Caller | None = None,
            credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A channel to ``host:port``. With TLS ``credentials`` the client certificate is the
    caller's identity; without, the caller's identity travels in request headers (which
    servers accept on loopback only)."""
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    if credentials is not None:
        ch = grpc.secure_channel(target, credentials, options=options)
        return grpc.intercept_channel(ch, _IdentityInterceptor(None))
    ch = grpc.insecure_channel(target, options=options)
    if caller is not None:
        ch = grpc.intercept_channel(ch, _IdentityInterceptor(caller))
    return ch
