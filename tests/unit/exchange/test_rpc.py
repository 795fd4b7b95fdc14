from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from exchange import errors, rpc


@pytest.mark.parametrize(("error", "code"), [
    (errors.InvalidInput("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ConfigError("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists("x"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied("x"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated("x"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.VerificationError(), grpc.StatusCode.DATA_LOSS),
    (ValueError("x"), grpc.StatusCode.INTERNAL),
])
def test_errors_map_to_one_status_each(error: Exception, code: grpc.StatusCode) -> None:
    assert rpc.status_for(error) is code


class _Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "signal 123 not found"


@pytest.mark.parametrize(("code", "cls"), [
    (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidInput),
    (grpc.StatusCode.NOT_FOUND, errors.NotFound),
    (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
    (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
    (grpc.StatusCode.INTERNAL, errors.SamenloopError),
])
def test_client_errors_come_back_as_samenloop_errors(code: grpc.StatusCode, cls: type) -> None:
    error = rpc.error_for(_Failed(code), "the hub")
    assert type(error) is cls
    assert "the hub" in str(error) and "signal 123 not found" in str(error)


def test_caller_is_validated() -> None:
    caller = rpc.Caller("org-a", "user", "partner")
    assert rpc.caller_from_metadata(caller.metadata()) == caller
    with pytest.raises(errors.InvalidInput):
        rpc.Caller("Org A", "user", "partner")
    with pytest.raises(errors.InvalidInput):
        rpc.Caller("org-a", "user", "superuser")
    with pytest.raises(errors.Unauthenticated):
        rpc.caller_from_metadata([(rpc.ORGANISATION_HEADER, "org-a")])
    with pytest.raises(errors.Unauthenticated):
        rpc.caller_from_metadata([*caller.metadata()[:2], (rpc.ROLE_HEADER, "root")])


def test_request_ids_are_uuids() -> None:
    given = "0b1c5a52-5d4e-4f0a-9a0b-6b2b9d4c1e11"
    assert rpc.request_id_from_metadata([(rpc.REQUEST_ID_HEADER, given)]) == given
    generated = rpc.request_id_from_metadata([(rpc.REQUEST_ID_HEADER, "<script>")])
    assert generated != "<script>" and len(generated) == 36


def test_timestamps() -> None:
    moment = datetime(2026, 6, 1, 12, 30, 15, 250000, tzinfo=UTC)
    ts = rpc.to_timestamp(moment)
    assert ts is not None
    assert rpc.from_timestamp(ts, "t") == moment
    assert rpc.from_timestamp(Timestamp(), "t") is None
    assert rpc.to_timestamp(None) is None
    with pytest.raises(errors.InvalidInput, match="t is not a valid timestamp"):
        rpc.from_timestamp(Timestamp(seconds=10**13), "t")
