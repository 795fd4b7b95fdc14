"""The privacy officer's client of the access log.

Every contact starts by witnessing the log (agent._witness): the hub's checkpoint key is
the one given (``hub_key``) or first seen, kept in ``state_file`` with the last checkpoint
verified; a log that shrank, forked or was rewritten is refused, unless the officer
continues read-only to investigate. Subject-access answers come with an inclusion proof
for every disclosure, each checked here against the witnessed checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agent._client import HubUser, KeyServiceClient
from agent._witness import Seen, Witness, newest, parse_hub_key
from exchange import auditlog, config, crypto, merkle, rpc, tls
from exchange import checkpoint as notes
from exchange.errors import ConfigError, FailedPrecondition, IntegrityError, VerificationError
from exchange.v1 import audit_pb2, common_pb2


@config.section("audit")
@dataclass(frozen=True)
class AuditSettings(tls.TlsClientSettings):
    organisation: str
    user: str = "privacy-officer"
    hub: str = "127.0.0.1:50051"
    # For subject-access requests: the key service derives the person's pseudonyms.
    keyservice: str = "127.0.0.1:50052"
    # Hex of the hub's Ed25519 checkpoint key, given out of band (printed by 'hub serve').
    hub_key: str = ""
    origin: str = "samenloop.local/hub"
    # Where the keys seen first and the last verified checkpoint are kept.
    state_file: Path = Path("samenloop-audit-state.json")


@dataclass(frozen=True)
class ProvenDisclosure:
    event: audit_pb2.AuditEvent
    recipient: str
    # The event names one of the person's own signals (else: their household's).
    names_person: bool = True


class Auditor(HubUser):
    def __init__(self, settings: AuditSettings, role: str = "privacy_officer", *,
                 read_only_on_failure: bool = False) -> None:
        super().__init__(settings.hub, rpc.Caller(settings.organisation, settings.user, role),
                         settings.client_tls())
        self.settings = settings
        self._caller = rpc.Caller(settings.organisation, settings.user, role)
        state = self._state()
        given = parse_hub_key(settings.hub_key) if settings.hub_key else None
        pinned = bytes.fromhex(state["hub_key"]) if "hub_key" in state else None
        if given is not None and pinned is not None and given != pinned:
            raise IntegrityError(f"the configured hub key differs from the key pinned in "
                                 f"{settings.state_file}: resolve this before trusting either")
        last = Seen.from_json(state["checkpoint"]) if "checkpoint" in state else None
        self.witness = Witness(self.hub, origin=settings.origin, trusted_key=given or pinned,
                               last=last, remember=self._remember,
                               read_only_on_failure=read_only_on_failure)
        self._contacted = False

    @property
    def notices(self) -> list[str]:
        return self.witness.notices

    # -- state ------------------------------------------------------------------------

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

    def _remember(self, key: bytes, seen: Seen) -> None:
        """Keep the key and the newest checkpoint: the stored one only ever moves forward,
        even when another process using the same state file saw a newer one meanwhile."""
        state = self._state()
        stored = Seen.from_json(state["checkpoint"]) if "checkpoint" in state else None
        state["hub_key"] = key.hex()
        state["checkpoint"] = newest(stored, seen).to_json()
        self._save(state)

    def _contact(self) -> None:
        if not self._contacted:
            self.witness.contact()
            self._contacted = True

    # -- the log ------------------------------------------------------------------------

    def query(self, *, limit: int, since: datetime | None = None,
              until: datetime | None = None, newest_first: bool = False,
              **filters: str) -> Iterator[audit_pb2.AuditEvent]:
        """Events visible to this officer, each proven to be in the witnessed log.

        Every page comes with an inclusion proof per event against a signed checkpoint;
        the checkpoint is checked against the last one seen, the leaf hash recomputed from
        the event here, and the proof checked: a hub cannot show events it did not log.
        """
        self._contact()
        token, left = "", limit
        while left > 0:
            page = self.hub.call(self.hub.audit.QueryEvents, audit_pb2.QueryEventsRequest(
                since=rpc.to_timestamp(since), until=rpc.to_timestamp(until),
                page_size=min(left, 1000), page_token=token, newest_first=newest_first,
                with_proofs=True, **filters))
            if len(page.proofs) != len(page.events) or not page.HasField("checkpoint"):
                raise IntegrityError("the hub sent events without proof that they are in "
                                     "its log")
            signed = self._witnessed(page.checkpoint)
            for event, proof in zip(page.events, page.proofs, strict=True):
                _check_included(event, proof, signed)
                yield event
            left -= len(page.events)
            token = page.next_page_token
            if not token:
                return

    def _witnessed(self, cp: audit_pb2.Checkpoint) -> notes.Checkpoint:
        """A checkpoint the hub sent with an answer, checked against the last one seen
        (no round trip when it is that one)."""
        last = self.witness.last
        if last is not None and cp.note == last.note:
            return notes.verify(cp.note, self.witness.trusted_key or b"", self.settings.origin)
        return self.witness.check(cp)

    def checkpoint(self) -> tuple[str, notes.Checkpoint]:
        """The hub's latest checkpoint note, verified and consistent with the last seen."""
        signed = self.witness.contact()
        self._contacted = True
        return self.witness.latest, signed

    def verify(self) -> audit_pb2.VerifyResponse:
        """Witness the log, then ask the hub to re-verify all of it."""
        self._contact()
        response = self.hub.call(self.hub.audit.Verify, audit_pb2.VerifyRequest(),
                                 timeout=600.0)
        self.witness.check(response.checkpoint)
        return response

    def compare(self, other_note: str) -> tuple[notes.Checkpoint, notes.Checkpoint]:
        return self.witness.compare(other_note)

    def report(self, since: datetime, until: datetime) -> audit_pb2.Report:
        self._contact()
        return self.hub.call(self.hub.audit.GetReport, audit_pb2.GetReportRequest(
            since=rpc.to_timestamp(since), until=rpc.to_timestamp(until)))

    def register(self) -> audit_pb2.ProcessingRegister:
        self._contact()
        return self.hub.call(self.hub.audit.GetProcessingRegister,
                             audit_pb2.GetProcessingRegisterRequest())

    # -- subject access ---------------------------------------------------------------

    def _person_key(self, bsn: str) -> bytes:
        keyservice = KeyServiceClient(self.settings.keyservice, self._caller,
                                      self.settings.client_tls())
        try:
            response = keyservice.public_key()
            public_key = bytes(response.public_key)
            state = self._state()
            pinned = state.get("oprf_key")
            if pinned is not None and pinned != public_key.hex():
                raise IntegrityError(
                    f"the key service now presents OPRF key {response.key_id}, not the key "
                    f"this client pinned in {self.settings.state_file}")
            if pinned is None:
                state["oprf_key"] = public_key.hex()
                self._save(state)
            (key,) = crypto.pseudonymise([(crypto.KeyKind.PERSON, bsn.encode())],
                                         public_key=public_key,
                                         evaluate=keyservice.evaluator(response.key_id))
            return key
        finally:
            keyservice.close()

    def subject_access(self, bsn: str) -> tuple[int, list[ProvenDisclosure]]:
        """GDPR art. 15: every disclosure of the person's data this officer may see.

        The BSN is pseudonymised here, through the key service; it never reaches the hub.
        Every disclosure's inclusion proof is checked against a checkpoint that is itself
        checked against the last one this client saw.
        """
        self._contact()
        key = self._person_key(bsn)
        response = self.hub.call(self.hub.audit.SubjectAccess, audit_pb2.SubjectAccessRequest(
            keys=[common_pb2.PseudonymousKey(kind=common_pb2.KEY_KIND_PERSON, value=key)]))
        signed = self._witnessed(response.checkpoint)
        found = []
        for item in response.disclosures:
            event = item.event
            _check_included(event, item.proof, signed)
            detail = json.loads(event.detail_json or "{}")
            recipient = (detail.get("recipient") if event.event_type != "alert.open"
                         else f"{event.actor.user_id} ({event.actor.organisation_id})")
            found.append(ProvenDisclosure(event, str(recipient or "?"), item.names_person))
        return response.signals, found


def _check_included(event: audit_pb2.AuditEvent, proof: audit_pb2.InclusionProof,
                    signed: notes.Checkpoint) -> None:
    """IntegrityError unless the event, hashed here, is in the signed checkpoint's tree."""
    leaf = auditlog.leaf_hash(auditlog.from_message(event))
    try:
        if (leaf != proof.leaf_hash or proof.index != event.index
                or proof.tree_size != signed.size or event.index >= signed.size):
            raise VerificationError()
        merkle.verify_inclusion(proof.index, proof.tree_size, leaf, list(proof.hashes),
                                signed.root_hash)
    except VerificationError:
        raise IntegrityError(f"event #{event.index} is not proven to be in the hub's signed "
                             "log: the hub showed an event it did not log") from None


def offline_trust(settings: AuditSettings,
                  files: list[Path]) -> tuple[bytes | None, list[tuple[int, bytes, str]]]:
    """What offline verification of a hub database can rest on, from outside it.

    The hub's key (configured, or pinned in the state file) and the checkpoints seen
    before: the state file's last one and any given notes, each signature checked.
    Returns (key, [(size, root, where it came from)]).
    """
    state: dict[str, Any] = {}
    if settings.state_file.exists():
        try:
            state = json.loads(settings.state_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {settings.state_file}: {exc}") from None
    given = parse_hub_key(settings.hub_key) if settings.hub_key else None
    pinned = bytes.fromhex(state["hub_key"]) if "hub_key" in state else None
    if given is not None and pinned is not None and given != pinned:
        raise IntegrityError(f"the configured hub key differs from the key pinned in "
                             f"{settings.state_file}: resolve this before trusting either")
    key = given or pinned
    notes_seen = [(str(settings.state_file), str(state["checkpoint"]["note"]))
                  ] if "checkpoint" in state else []
    notes_seen += [(str(path), read_checkpoint_file(path)) for path in files]
    trusted = []
    for source, note in notes_seen:
        if key is None:
            raise FailedPrecondition(f"cannot check the checkpoint in {source} without the "
                                     "hub's key: give --hub-key")
        try:
            signed = notes.verify(note, key, settings.origin)
        except VerificationError:
            raise IntegrityError(f"the checkpoint in {source} is not signed by the hub's "
                                 f"key for origin '{settings.origin}'") from None
        if signed.size:
            trusted.append((signed.size, signed.root_hash, source))
    return key, trusted


def read_checkpoint_file(path: Path) -> str:
    """A checkpoint note from a file: the note itself, or a client's state file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise FailedPrecondition(f"cannot read {path}: {exc.strerror}") from None
    if text.lstrip().startswith("{"):
        try:
            return str(json.loads(text)["checkpoint"]["note"])
        except (ValueError, KeyError, TypeError):
            raise FailedPrecondition(f"{path} holds no checkpoint") from None
    return text

