"""The privacy officer's client of the access log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from agent._client import HubUser
from exchange import checkpoint as notes
from exchange import config, rpc
from exchange.errors import FailedPrecondition
from exchange.v1 import audit_pb2


@config.section("audit")
@dataclass(frozen=True)
class AuditSettings:
    organisation: str
    user: str = "privacy-officer"
    hub: str = "127.0.0.1:50051"
    # Hex of the hub's Ed25519 checkpoint key, pinned out of band; checked when set.
    hub_key: str = ""
    origin: str = "samenloop.local/hub"


class Auditor(HubUser):
    def __init__(self, settings: AuditSettings, role: str = "privacy_officer") -> None:
        super().__init__(settings.hub, rpc.Caller(settings.organisation, settings.user, role))
        self.settings = settings

    def query(self, *, limit: int, since: datetime | None = None,
              until: datetime | None = None, **filters: str) -> Iterator[audit_pb2.AuditEvent]:
        token, left = "", limit
        while left > 0:
            page = self.hub.call(self.hub.audit.QueryEvents, audit_pb2.QueryEventsRequest(
                since=rpc.to_timestamp(since), until=rpc.to_timestamp(until),
                page_size=min(left, 1000), page_token=token, **filters))
            yield from page.events
            left -= len(page.events)
            token = page.next_page_token
            if not token:
                return

    def checkpoint(self) -> tuple[audit_pb2.Checkpoint, notes.Checkpoint]:
        """The hub's latest checkpoint, its signature verified."""
        cp = self.hub.call(self.hub.audit.GetCheckpoint, audit_pb2.GetCheckpointRequest())
        return cp, self._verify_note(cp)

    def _verify_note(self, cp: audit_pb2.Checkpoint) -> notes.Checkpoint:
        key = bytes.fromhex(self.settings.hub_key) if self.settings.hub_key else cp.public_key
        if self.settings.hub_key and key != cp.public_key:
            raise FailedPrecondition("the hub signs with a key other than the pinned hub_key")
        signed = notes.verify(cp.note, key, self.settings.origin)
        if signed.size != cp.size or signed.root_hash != cp.root_hash:
            raise FailedPrecondition("the checkpoint's fields differ from its signed note")
        return signed

    def verify(self) -> audit_pb2.VerifyResponse:
        response = self.hub.call(self.hub.audit.Verify, audit_pb2.VerifyRequest(),
                                 timeout=600.0)
        self._verify_note(response.checkpoint)
        return response
