"""The privacy officer's client of the access log.

It trusts the hub's checkpoint key it was given (``hub_key``) or, failing that, the key
it saw first (pinned in ``state_file``), and it remembers the last checkpoint it verified:
a log that shrank, or a different root at a size it already saw, is refused loudly.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent._client import HubUser
from exchange import checkpoint as notes
from exchange import config, rpc
from exchange.errors import ConfigError, FailedPrecondition, IntegrityError
from exchange.v1 import audit_pb2

_HEX_KEY = re.compile(r"[0-9a-f]{64}")


@config.section("audit")
@dataclass(frozen=True)
class AuditSettings:
    organisation: str
    user: str = "privacy-officer"
    hub: str = "127.0.0.1:50051"
    # Hex of the hub's Ed25519 checkpoint key, given out of band (printed by 'hub serve').
    hub_key: str = ""
    origin: str = "samenloop.local/hub"
    # Where the key seen first and the last verified checkpoint are kept.
    state_file: Path = Path("samenloop-audit-state.json")


def parse_hub_key(value: str) -> bytes:
    if not _HEX_KEY.fullmatch(value):
        raise ConfigError("the hub key must be 64 lowercase hex characters")
    return bytes.fromhex(value)


class Auditor(HubUser):
    def __init__(self, settings: AuditSettings, role: str = "privacy_officer") -> None:
        super().__init__(settings.hub, rpc.Caller(settings.organisation, settings.user, role))
        self.settings = settings
        self.notices: list[str] = []
        self._pinned_key = parse_hub_key(settings.hub_key) if settings.hub_key else None

    def query(self, *, limit: int, since: datetime | None = None,
              until: datetime | None = None, newest_first: bool = False,
              **filters: str) -> Iterator[audit_pb2.AuditEvent]:
        token, left = "", limit
        while left > 0:
            page = self.hub.call(self.hub.audit.QueryEvents, audit_pb2.QueryEventsRequest(
                since=rpc.to_timestamp(since), until=rpc.to_timestamp(until),
                page_size=min(left, 1000), page_token=token, newest_first=newest_first,
                **filters))
            yield from page.events
            left -= len(page.events)
            token = page.next_page_token
            if not token:
                return

    def checkpoint(self) -> tuple[audit_pb2.Checkpoint, notes.Checkpoint]:
        """The hub's latest checkpoint, its signature and history checked."""
        cp = self.hub.call(self.hub.audit.GetCheckpoint, audit_pb2.GetCheckpointRequest())
        return cp, self._check(cp)

    def verify(self) -> audit_pb2.VerifyResponse:
        response = self.hub.call(self.hub.audit.Verify, audit_pb2.VerifyRequest(),
                                 timeout=600.0)
        self._check(response.checkpoint)
        return response

    # -- trust ----------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self.settings.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {self.settings.state_file}: {exc}") from None
        return loaded

    def _save(self, state: dict[str, Any]) -> None:
        path = self.settings.state_file
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, path)

    def _check(self, cp: audit_pb2.Checkpoint) -> notes.Checkpoint:
        state = self._state()
        presented = bytes(cp.public_key)
        if self._pinned_key is not None:
            trusted = self._pinned_key
        elif "hub_key" in state:
            trusted = bytes.fromhex(state["hub_key"])
        else:
            trusted = presented
            state["hub_key"] = presented.hex()
            self.notices.append(
                f"pinned the hub's checkpoint key {presented.hex()} on first use: compare "
                "it with the key 'samenloop hub serve' prints, or set [audit] hub_key")
        if presented != trusted:
            raise IntegrityError(
                f"the hub now signs with key {presented.hex()}, not the trusted key "
                f"{trusted.hex()}: do not rely on this log until this is explained")
        origin = cp.note.split("\n", 1)[0]
        if origin != self.settings.origin:
            raise FailedPrecondition(
                f"the hub signs as origin '{origin}', not '{self.settings.origin}' as "
                "configured: set [audit] origin (or --origin) to the hub's origin")
        signed = notes.verify(cp.note, trusted, self.settings.origin)
        if signed.size != cp.size or signed.root_hash != cp.root_hash:
            raise IntegrityError("the checkpoint's fields differ from its signed note")
        last = state.get("checkpoint")
        if last is not None:
            size, root = int(last["size"]), base64.b64decode(last["root"])
            if signed.size < size or (signed.size == size and signed.root_hash != root):
                raise IntegrityError(
                    f"THE HUB'S LOG WAS REWRITTEN: it now has {signed.size} events with root "
                    f"{signed.root_hash.hex()[:16]}..., but this client verified {size} events "
                    f"with root {root.hex()[:16]}... before. Keep {self.settings.state_file} "
                    "as evidence and report it")
        state["checkpoint"] = {"size": signed.size,
                               "root": base64.b64encode(signed.root_hash).decode(),
                               "note": cp.note}
        self._save(state)
        return signed
