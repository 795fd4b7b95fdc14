"""The coordinator's desk: the alert inbox, watching it, opening envelopes locally."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent._client import HubUser
from agent._identity import Identity, envelope_context
from exchange import config, crypto, log, rpc, tls
from exchange.errors import Unavailable, VerificationError
from exchange.v1 import coordinator_pb2

_log = log.get("coordinator")


@config.section("coordinator")
@dataclass(frozen=True)
class CoordinatorSettings(tls.TlsClientSettings):
    coordinator_id: str
    organisation: str
    hub: str = "127.0.0.1:50051"
    key_file: Path = Path("coordinator.key")
    # Where 'alerts --watch' keeps the cursor it last processed, to resume from.
    state_file: Path = Path("samenloop-coordinator-state.json")


@dataclass(frozen=True)
class OpenedSignal:
    signal_id: str
    organisation_id: str
    identity: Identity | None  # None when the envelope did not open


class CoordinatorDesk(HubUser):
    def __init__(self, settings: CoordinatorSettings) -> None:
        super().__init__(settings.hub, rpc.Caller(settings.organisation,
                                                  settings.coordinator_id, "coordinator"),
                         settings.client_tls())
        self.settings = settings
        self._closed = False

    def close(self) -> None:
        self._closed = True
        super().close()

    def alerts(
        self, states: list[coordinator_pb2.AlertState.ValueType] | None = None,
        *, escalated: bool = False, id_prefix: str = "",
    ) -> list[coordinator_pb2.Alert]:
        """Your alerts (default: every open one); with ``escalated``, the alerts escalated
        to you as a covenant's escalation contact; with ``id_prefix``, only those whose id
        starts with it (the hub reads, and logs, only those)."""
        out: list[coordinator_pb2.Alert] = []
        token = ""
        while True:
            page = self.hub.call(self.hub.coordinator.ListAlerts, coordinator_pb2.ListAlertsRequest(
                states=states or [], page_size=200, page_token=token, escalated=escalated,
                alert_id_prefix=id_prefix))
            # (a hub from before alert_id_prefix lists every alert)
            out.extend(a for a in page.alerts if a.alert_id.startswith(id_prefix))
            token = page.next_page_token
            if not token:
                return out

    def watch(self, after: int | None = 0, *, reconnect: bool = True,
              max_backoff: float = 30.0) -> Iterator[coordinator_pb2.AlertEvent]:
        """Every alert change after the cursor, in order, each once.

        ``after=None`` starts with the changes made from now on. With ``reconnect`` the
        stream never ends: when the hub goes away it reconnects with backoff and resumes
        after the last cursor it yielded.
        """
        cursor: int | None = after
        backoff = 0.5
        while not self._closed:
            try:
                for event in self.hub.watch(cursor):
                    cursor, backoff = event.cursor, 0.5
                    yield event
                if not reconnect:
                    return
            except Unavailable:
                if not reconnect or self._closed:
                    raise
            if self._closed:
                return
            _log.warning("alert stream ended; reconnecting", cursor=cursor, backoff=backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    def open(self, alert_id: str,
             key: crypto.EnvelopeKey) -> tuple[coordinator_pb2.Alert, list[OpenedSignal]]:
        """Fetch an alert's envelopes and open each locally with the coordinator's key."""
        response = self.hub.call(self.hub.coordinator.OpenAlert,
                                 coordinator_pb2.OpenAlertRequest(alert_id=alert_id))
        me = self.settings.coordinator_id
        opened = []
        for item in response.envelopes:
            env = item.envelope
            identity = None
            try:
                if env.recipient_id != me or env.key_fingerprint != crypto.fingerprint(
                        key.public_key):
                    raise VerificationError()
                plaintext = crypto.open(env.ciphertext, key,
                                        envelope_context(item.signal_id, item.organisation_id, me))
                identity = Identity.from_bytes(plaintext, item.signal_id, item.organisation_id)
            except VerificationError:
                _log.warning("envelope did not open", signal_id=item.signal_id,
                             alert_id=alert_id)
            opened.append(OpenedSignal(item.signal_id, item.organisation_id, identity))
        return response.alert, opened

    def record_contact(self, alert_id: str) -> coordinator_pb2.Alert:
        """Record that the professionals were brought together."""
        return self.hub.call(self.hub.coordinator.RecordContact,
                             coordinator_pb2.RecordContactRequest(alert_id=alert_id))

    def close_alert(self, alert_id: str, reason: str = "resolved") -> coordinator_pb2.Alert:
        reasons = {"resolved": coordinator_pb2.ALERT_CLOSE_REASON_RESOLVED,
                   "no_action_needed": coordinator_pb2.ALERT_CLOSE_REASON_NO_ACTION_NEEDED}
        if reason not in reasons:
            raise ValueError(f"reason must be one of {', '.join(reasons)}")
        return self.hub.call(self.hub.coordinator.CloseAlert, coordinator_pb2.CloseAlertRequest(
            alert_id=alert_id, reason=reasons[reason]))
