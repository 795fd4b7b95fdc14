"""The hub's gRPC edge: servicers for the signal, coordinator, audit and admin services.

One decorator, :func:`rpc`, does for every method what the edge must do: resolve the
caller, bind the request id, organisation and role to the log context, check the role,
map Samenloop errors to status codes (via exchange.rpc) and write every refusal to the
access log. Servicer bodies only convert between protobuf and hub._core.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar, cast

import grpc
import structlog

from exchange import log, vocab
from exchange.errors import (
    InvalidInput,
    PermissionDenied,
    SamenloopError,
    Unauthenticated,
    Unavailable,
)
from exchange.rpc import (
    Caller,
    caller_from_metadata,
    from_timestamp,
    request_id_from_metadata,
    status_for,
    to_timestamp,
)
from exchange.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    common_pb2,
    coordinator_pb2,
    coordinator_pb2_grpc,
    signal_pb2,
    signal_pb2_grpc,
)
from hub import _audit, _core, _inputs, _ops
from hub._logops import ROUND_TO, SUPPRESS_BELOW, AuditFilter, ProvenEvent
from hub._models import AuditCheckpoint, AuditEvent, Consent, Coordinator, Organisation

_log = log.get("hub")
S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Inner = Callable[[S, _audit.Access, Req, Any], Resp]
Outer = Callable[[S, Req, Any], Resp]
IdentityResolver = Callable[[grpc.ServicerContext], Caller]
_ANONYMOUS = ("unknown", "unknown", "anonymous")
MAX_ITEM_ERRORS = 1000
BULK_CHUNK = 200  # signals per transaction in SubmitSignals


def _echo_uuid(value: str) -> str:
    """A client's signal id, echoed only when it is a well-formed UUID."""
    try:
        return vocab.uuid_str(value, "signal_id")
    except InvalidInput:
        return ""


def metadata_identity(context: grpc.ServicerContext) -> Caller:
    """Development identity: the caller's own headers (loopback only, see hub._server)."""
    return caller_from_metadata(context.invocation_metadata())


class _Edge:
    def __init__(self, hub: _core.Hub, identity: IdentityResolver,
                 stopping: threading.Event) -> None:
        self.hub = hub
        self.identity = identity
        self.stopping = stopping

    def access(self, context: grpc.ServicerContext) -> _audit.Access:
        metadata = context.invocation_metadata()
        request_id = request_id_from_metadata(metadata)
        try:
            caller = self.identity(context)
        except Unauthenticated as exc:  # its message says why, and names no one
            org, user, role = _ANONYMOUS
            self.refuse(_audit.Access(org, user, role, request_id, context.peer()),
                        "auth", "read", exc, context)
            raise  # pragma: no cover - refuse aborts
        return _audit.Access(caller.organisation_id, caller.user_id, caller.role,
                             request_id, context.peer(), user_name=caller.display_name)

    def refuse(self, access: _audit.Access, event_type: str, action: str,
               exc: BaseException, context: grpc.ServicerContext) -> None:
        if isinstance(exc, Unavailable):  # the hub itself is going away: not a refusal
            context.abort(status_for(exc), str(exc))
        _ops.observe(event_type, status_for(exc).name)
        event = _audit.refusal(event_type, action, exc)
        try:
            self.hub.log_rejection(access, event)
        except Exception:  # noqa: BLE001 - the refusal must still reach the caller
            _log.exception("could not log a refused request", event_type=event_type)
        if isinstance(exc, SamenloopError):
            _log.info("request refused", outcome=event.outcome, code=event.reason,
                      message=str(exc))
            context.abort(status_for(exc), str(exc))
        _log.error("request failed", rpc=event_type, error=type(exc).__name__, exc_info=exc)
        context.abort(grpc.StatusCode.INTERNAL, "internal error")


def rpc(
    event_type: str, action: str, roles: tuple[str, ...]
) -> Callable[[Inner[S, Req, Resp]], Outer[S, Req, Resp]]:
    """Wrap a servicer method ``(self, access, request, context)`` with the edge's duties.

    The wrapped method has the generated servicer's signature ``(self, request, context)``.
    """

    def wrap(method: Inner[S, Req, Resp]) -> Outer[S, Req, Resp]:
        streaming = inspect.isgeneratorfunction(method)

        def done(started: float, outcome: str) -> None:
            seconds = time.perf_counter() - started
            _ops.observe(event_type, "OK", seconds)
            _log.info("request", outcome=outcome, ms=round(seconds * 1000, 2))

        def enter(self: Any, context: grpc.ServicerContext) -> _audit.Access:
            edge: _Edge = self._edge
            access = edge.access(context)
            structlog.contextvars.bind_contextvars(
                request_id=access.request_id, organisation=access.organisation_id,
                role=access.role, rpc=event_type)
            if access.role not in roles:
                edge.refuse(access, event_type, action, PermissionDenied(
                    f"the role {access.role} may not call this method"), context)
            return access

        if streaming:
            @functools.wraps(method)
            def stream_handler(self: Any, request: Any,
                               context: grpc.ServicerContext) -> Iterator[Any]:
                started = time.perf_counter()
                access = enter(self, context)
                try:
                    yield from cast(Iterator[Any], method(self, access, request, context))
                    done(started, "success")
                except Exception as exc:  # noqa: BLE001 - the edge maps every error
                    self._edge.refuse(access, event_type, action, exc, context)
                finally:
                    structlog.contextvars.clear_contextvars()

            return stream_handler  # type: ignore[return-value] # an Iterator is Resp here

        @functools.wraps(method)
        def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            access = enter(self, context)
            try:
                response = method(self, access, request, context)
                done(started, "success")
                return response
            except Exception as exc:  # noqa: BLE001 - the edge maps every error
                self._edge.refuse(access, event_type, action, exc, context)
            finally:
                structlog.contextvars.clear_contextvars()

        return handler

    return wrap


# -- conversions ----------------------------------------------------------------------


def _contact(c: _inputs.Contact) -> common_pb2.Contact:
    return common_pb2.Contact(name=c.name, phone=c.phone, email=c.email)


def _step(step: tuple[datetime, str] | None) -> tuple[Any, str]:
    return (None, "") if step is None else (to_timestamp(step[0]), step[1])


def alert_pb(view: _core.AlertView) -> coordinator_pb2.Alert:
    states = {v: k for k, v in _inputs.ALERT_STATES.items()}
    (seen_at, seen_by), (contact_at, contact_by), (closed_at, closed_by) = (
        _step(view.seen), _step(view.contact_made), _step(view.closed))
    return coordinator_pb2.Alert(
        coordinator_id=view.coordinator_id, seen_at=seen_at, seen_by=seen_by,
        contact_made_at=contact_at, contact_made_by=contact_by, closed_at=closed_at,
        closed_by=closed_by, escalated_to=view.escalated_to,
        reminded_at=_step((view.reminded_at, ""))[0] if view.reminded_at else None,
        escalated_at=_step((view.escalated_at, ""))[0] if view.escalated_at else None,
        alert_id=view.alert_id, household_ref=view.household_ref, state=states[view.state],
        created_at=to_timestamp(view.created_at), updated_at=to_timestamp(view.updated_at),
        covenant_id=view.covenant_id, closed_reason=view.closed_reason,
        involved=[
            coordinator_pb2.Involvement(
                signal_id=i.signal_id, organisation_id=i.organisation_id,
                organisation_name=i.organisation_name, professional=_contact(i.professional),
                signalled_at=to_timestamp(i.signalled_at))
            for i in view.involved
        ],
    )


_TASK_KINDS = {"consent_needed": signal_pb2.TASK_KIND_CONSENT_NEEDED,
               "match_notice": signal_pb2.TASK_KIND_MATCH_NOTICE,
               "archived_match": signal_pb2.TASK_KIND_ARCHIVED_MATCH}


def task_pb(view: _core.TaskView) -> signal_pb2.Task:
    return signal_pb2.Task(
        task_id=view.task_id, kind=_TASK_KINDS[view.kind],
        state=signal_pb2.TASK_STATE_OPEN if view.state == "open" else signal_pb2.TASK_STATE_DONE,
        signal_id=view.signal_id, covenant_id=view.covenant_id,
        created_at=to_timestamp(view.created_at), updated_at=to_timestamp(view.updated_at),
        closed_reason=view.closed_reason,
        others=[signal_pb2.NoticeContact(organisation_id=org, organisation_name=name,
                                         professional=_contact(contact))
                for org, name, contact in view.others])


def consent_pb(row: Consent) -> signal_pb2.ConsentRecord:
    return signal_pb2.ConsentRecord(
        consent_id=row.id, organisation_id=row.organisation_id, covenant_id=row.covenant_id,
        purposes=row.purposes, evidence_reference=row.evidence_reference,
        valid_from=to_timestamp(row.valid_from), valid_until=to_timestamp(row.valid_until),
        recorded_at=to_timestamp(row.recorded_at), recorded_by=row.recorded_by,
        revoked_at=to_timestamp(row.revoked_at), revoked_by=row.revoked_by or "",
        covenant_version=row.covenant_version, organisations=row.organisations,
    )


def event_pb(row: AuditEvent) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(
        index=row.seq, event_id=row.event_id, occurred_at=to_timestamp(row.occurred_at),
        event_type=row.event_type, action=row.action, outcome=row.outcome,
        actor=audit_pb2.Actor(organisation_id=row.actor_org, user_id=row.actor_user,
                              role=row.actor_role, name=row.actor_name),
        requested=row.requested,
        on_behalf_of=row.on_behalf_of, purpose=row.purpose, subject_ref=row.subject_ref,
        basis=row.basis, reason=row.reason, source_system=row.source_system,
        network_address=row.network_address, request_id=row.request_id,
        detail_json=row.detail, leaf_hash=row.leaf_hash, chain_hash=row.chain_hash,
        owner_organisation_id=row.owner_org,
    )


def checkpoint_pb(cp: AuditCheckpoint, public_key: bytes) -> audit_pb2.Checkpoint:
    return audit_pb2.Checkpoint(note=cp.note, size=cp.size, root_hash=cp.root_hash,
                                time=to_timestamp(cp.signed_at), public_key=public_key)


def proof_pb(proven: ProvenEvent, tree_size: int) -> audit_pb2.InclusionProof:
    return audit_pb2.InclusionProof(index=proven.event.seq, tree_size=tree_size,
                                    leaf_hash=proven.leaf_hash, hashes=proven.proof)


def processing_pb(cov: Any, hub: _core.Hub) -> audit_pb2.ProcessingActivity:
    """A covenant as a GDPR art. 30 processing activity."""
    years = hub.log_retention.days // 365
    return audit_pb2.ProcessingActivity(
        covenant_id=cov.id, covenant_version=cov.version, name=cov.name,
        controllers=sorted(cov.parties), purposes=sorted(cov.purposes),
        legal_basis=cov.legal_basis,
        categories=[f"{c}: {basis}" + (f" ({cov.article_for(c)})"
                                       if basis == "covenant" and cov.article_for(c) else "")
                    for c, basis in sorted(cov.categories.items())],
        regions=sorted(cov.regions),
        data_subjects=["members of households about whom a party has a concern",
                       "the parties' professionals (contact details)",
                       "the coordinator"],
        personal_data=["pseudonymous person and address keys (RFC 9497 OPRF; the hub cannot "
                       "compute them)",
                       "a coarse signal category, a municipality code and dates",
                       "the professional's name, phone number and e-mail address",
                       "the household's identity and the party's case reference, encrypted "
                       "to the coordinator (RFC 9180 HPKE; unreadable to the hub)",
                       "consent records: scope, validity and evidence reference"],
        recipients=[f"the coordinator {cov.coordinator_id}: which parties and professionals "
                    "are involved, and the encrypted identities",
                    "each party's privacy officer: the access log of its own data",
                    "the oversight organisations' privacy officers: the whole access log"],
        retention=[f"signals: at most {hub.limits.max_signal_age.days} days, removed earlier "
                   "when withdrawn",
                   f"access log: at least {years} years, pruned only as whole checkpointed "
                   "ranges"],
        security_measures=["keyed pseudonyms from a separate key service (OPRF); no party "
                           "shares a secret",
                           "identities encrypted end to end to the coordinator",
                           "every disclosure decided per signal on the covenant or consent",
                           "every access logged in an RFC 6962 Merkle tree with signed "
                           "checkpoints that parties verify",
                           "role- and organisation-based access to every service"],
        valid_from=to_timestamp(cov.valid_from), valid_until=to_timestamp(cov.valid_until))


def organisation_pb(org: Organisation) -> admin_pb2.Organisation:
    return admin_pb2.Organisation(organisation_id=org.id, name=org.name,
                                  registered_at=to_timestamp(org.registered_at))


def coordinator_pb(c: Coordinator) -> admin_pb2.Coordinator:
    return admin_pb2.Coordinator(
        coordinator_id=c.id, organisation_id=c.organisation_id,
        contact=common_pb2.Contact(name=c.name, phone=c.phone, email=c.email),
        public_key=c.public_key, key_fingerprint=c.key_fingerprint,
        registered_at=to_timestamp(c.registered_at))


def covenant_pb(row: Any, cov: Any) -> admin_pb2.Covenant:
    return admin_pb2.Covenant(
        covenant_id=cov.id, version=row.version, name=cov.name,
        coordinator_id=cov.coordinator_id, parties=sorted(cov.parties),
        purposes=sorted(cov.purposes), categories=sorted(cov.categories),
        regions=sorted(cov.regions), legal_basis=cov.legal_basis,
        valid_from=to_timestamp(cov.valid_from), valid_until=to_timestamp(cov.valid_until),
        registered_at=to_timestamp(row.registered_at), source_sha256=row.source_sha256)


# -- servicers ------------------------------------------------------------------------

PARTNER = ("partner",)
COORDINATOR = ("coordinator",)
OFFICERS = ("privacy_officer", "administrator")
ADMIN = ("administrator",)
EVERYONE = vocab.ROLES


class SignalService(signal_pb2_grpc.SignalServiceServicer):
    def __init__(self, edge: _Edge) -> None:
        self._edge = edge
        self._hub = edge.hub

    @rpc("recipients.read", "read", PARTNER)
    def GetRecipients(self, access: _audit.Access, request: Any,
                      context: Any) -> signal_pb2.GetRecipientsResponse:
        return signal_pb2.GetRecipientsResponse(recipients=[
            signal_pb2.Recipient(
                coordinator_id=r.coordinator_id, covenant_id=r.covenant_id,
                covenant_version=r.covenant_version, public_key=r.public_key,
                key_fingerprint=r.key_fingerprint, regions=r.regions)
            for r in self._hub.recipients(access)
        ])

    def _submit(self, access: _audit.Access,
                request: signal_pb2.SubmitSignalRequest) -> signal_pb2.SubmitSignalResponse:
        signal, duplicate = self._hub.submit(access, _inputs.signal(request))
        return signal_pb2.SubmitSignalResponse(
            signal_id=signal.id, duplicate=duplicate,
            received_at=to_timestamp(signal.received_at),
            expires_at=to_timestamp(signal.expires_at))

    @rpc("signal.submit", "create", PARTNER)
    def SubmitSignal(self, access: _audit.Access, request: signal_pb2.SubmitSignalRequest,
                     context: Any) -> signal_pb2.SubmitSignalResponse:
        return self._submit(access, request)

    @rpc("signal.submit_bulk", "create", PARTNER)
    def SubmitSignals(self, access: _audit.Access,
                      request: Iterable[signal_pb2.SubmitSignalRequest],
                      context: Any) -> signal_pb2.SubmitSignalsResponse:
        accepted = duplicates = 0
        rejected: list[signal_pb2.ItemError] = []
        requests = iter(request)
        offset = 0
        while chunk := list(itertools.islice(requests, BULK_CHUNK)):
            items: list[_inputs.SignalInput | SamenloopError] = []
            for item in chunk:
                try:
                    items.append(_inputs.signal(item))
                except SamenloopError as exc:
                    items.append(exc)
            for index, result in enumerate(self._hub.submit_many(access, items), offset):
                if isinstance(result, SamenloopError):
                    if len(rejected) < MAX_ITEM_ERRORS:
                        rejected.append(signal_pb2.ItemError(
                            index=index, signal_id=_echo_uuid(chunk[index - offset].signal_id),
                            code=status_for(result).name, message=str(result)))
                else:
                    duplicates += result[1]
                    accepted += not result[1]
            offset += len(chunk)
        _log.info("bulk submission done", accepted=accepted, duplicates=duplicates,
                  rejected=offset - accepted - duplicates)
        return signal_pb2.SubmitSignalsResponse(
            accepted=accepted, duplicates=duplicates, rejected=rejected)

    @rpc("signal.withdraw", "update", PARTNER)
    def WithdrawSignal(self, access: _audit.Access, request: signal_pb2.WithdrawSignalRequest,
                       context: Any) -> signal_pb2.WithdrawSignalResponse:
        signal_id, reason = _inputs.withdrawal(request)
        at = self._hub.withdraw(access, signal_id, reason)
        return signal_pb2.WithdrawSignalResponse(signal_id=signal_id,
                                                 withdrawn_at=to_timestamp(at))

    @rpc("consent.grant", "create", PARTNER)
    def RecordConsent(self, access: _audit.Access, request: signal_pb2.RecordConsentRequest,
                      context: Any) -> signal_pb2.ConsentRecord:
        row, _ = self._hub.record_consent(access, _inputs.consent(request))
        return consent_pb(row)

    @rpc("consent.revoke", "update", PARTNER)
    def RevokeConsent(self, access: _audit.Access, request: signal_pb2.RevokeConsentRequest,
                      context: Any) -> signal_pb2.ConsentRecord:
        consent_id = vocab.uuid_str(request.consent_id, "consent_id")
        return consent_pb(self._hub.revoke_consent(access, consent_id))

    @rpc("profile.read", "read", PARTNER)
    def GetLinkageProfile(self, access: _audit.Access, request: Any,
                          context: Any) -> admin_pb2.LinkageProfile:
        row = self._hub.profile_for(access)
        return profile_pb(row) if row is not None else admin_pb2.LinkageProfile()

    @rpc("address.exclude", "create", PARTNER)
    def ExcludeAddresses(self, access: _audit.Access,
                         request: signal_pb2.ExcludeAddressesRequest,
                         context: Any) -> signal_pb2.ExcludeAddressesResponse:
        keys = _inputs.address_keys(list(request.keys))
        added, total = self._hub.exclude_addresses(access, keys)
        return signal_pb2.ExcludeAddressesResponse(added=added, total=total)

    @rpc("task.list", "read", PARTNER)
    def ListTasks(self, access: _audit.Access, request: signal_pb2.ListTasksRequest,
                  context: Any) -> signal_pb2.ListTasksResponse:
        views = self._hub.list_tasks(access, include_done=request.include_done)
        return signal_pb2.ListTasksResponse(tasks=[task_pb(v) for v in views])

    @rpc("task.dismiss", "update", PARTNER)
    def DismissTask(self, access: _audit.Access, request: signal_pb2.DismissTaskRequest,
                    context: Any) -> signal_pb2.Task:
        return task_pb(self._hub.dismiss_task(access, request.task_id))


class CoordinatorService(coordinator_pb2_grpc.CoordinatorServiceServicer):
    POLL_SECONDS = 1.0

    def __init__(self, edge: _Edge) -> None:
        self._edge = edge
        self._hub = edge.hub

    @rpc("alert.list", "read", COORDINATOR)
    def ListAlerts(self, access: _audit.Access, request: coordinator_pb2.ListAlertsRequest,
                   context: Any) -> coordinator_pb2.ListAlertsResponse:
        states = _inputs.alert_states(list(request.states))
        size = _inputs.page_size(request.page_size, default=100, maximum=500)
        prefix = (vocab.uuid_prefix(request.alert_id_prefix, "alert_id_prefix")
                  if request.alert_id_prefix else "")
        views, token = self._hub.list_alerts(access, states, size, request.page_token,
                                             escalated=request.escalated, id_prefix=prefix)
        return coordinator_pb2.ListAlertsResponse(alerts=[alert_pb(v) for v in views],
                                                  next_page_token=token)

    @rpc("alert.watch", "search", COORDINATOR)
    def WatchAlerts(self, access: _audit.Access, request: coordinator_pb2.WatchAlertsRequest,
                    context: grpc.ServicerContext) -> Iterator[coordinator_pb2.AlertEvent]:
        changes = {"created": coordinator_pb2.ALERT_CHANGE_CREATED,
                   "updated": coordinator_pb2.ALERT_CHANGE_UPDATED,
                   "closed": coordinator_pb2.ALERT_CHANGE_CLOSED,
                   "reminder": coordinator_pb2.ALERT_CHANGE_REMINDER,
                   "escalated": coordinator_pb2.ALERT_CHANGE_ESCALATED}
        if request.after_cursor >= 2**63:
            raise InvalidInput("after_cursor is beyond any cursor")
        cursor = (self._hub.latest_cursor(access) if request.from_now
                  else request.after_cursor)
        self._hub.start_watch(access, cursor)
        while context.is_active() and not self._edge.stopping.is_set():
            seen = self._hub.feed_version()
            batch = self._hub.alert_changes(access, cursor)
            for seq, change, view in batch:
                yield coordinator_pb2.AlertEvent(cursor=seq, change=changes[change],
                                                 alert=alert_pb(view))
                cursor = seq
            if not batch:
                self._hub.wait_for_feed(seen, self.POLL_SECONDS)
        if self._edge.stopping.is_set():
            raise Unavailable("the hub is shutting down: reconnect with the last cursor")

    @rpc("alert.open", "disclose", COORDINATOR)
    def OpenAlert(self, access: _audit.Access, request: coordinator_pb2.OpenAlertRequest,
                  context: Any) -> coordinator_pb2.OpenAlertResponse:
        view, envelopes = self._hub.open_alert(access, request.alert_id)
        return coordinator_pb2.OpenAlertResponse(
            alert=alert_pb(view),
            envelopes=[
                coordinator_pb2.OpenedEnvelope(
                    signal_id=sid, organisation_id=org,
                    envelope=common_pb2.SealedEnvelope(
                        recipient_id=env.recipient_id, key_fingerprint=env.key_fingerprint,
                        scheme=env.scheme, ciphertext=env.ciphertext))
                for sid, org, env in envelopes
            ])

    @rpc("alert.contact", "update", COORDINATOR)
    def AcknowledgeAlert(self, access: _audit.Access,
                         request: coordinator_pb2.AcknowledgeAlertRequest,
                         context: Any) -> coordinator_pb2.Alert:
        return alert_pb(self._hub.record_contact(access, request.alert_id))

    @rpc("alert.contact", "update", COORDINATOR)
    def RecordContact(self, access: _audit.Access,
                      request: coordinator_pb2.RecordContactRequest,
                      context: Any) -> coordinator_pb2.Alert:
        return alert_pb(self._hub.record_contact(access, request.alert_id))

    @rpc("alert.close", "update", COORDINATOR)
    def CloseAlert(self, access: _audit.Access, request: coordinator_pb2.CloseAlertRequest,
                   context: Any) -> coordinator_pb2.Alert:
        reason = _inputs.close_reason(request.reason)
        return alert_pb(self._hub.close_alert(access, request.alert_id, reason))


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, edge: _Edge) -> None:
        self._edge = edge
        self._hub = edge.hub

    @rpc("audit.query", "search", OFFICERS)
    def QueryEvents(self, access: _audit.Access, request: audit_pb2.QueryEventsRequest,
                    context: Any) -> audit_pb2.QueryEventsResponse:
        flt = AuditFilter(
            subject_ref=vocab.text(request.subject_ref, "subject_ref", max_len=64,
                                   required=False),
            organisation_id=request.organisation_id and vocab.slug(
                request.organisation_id, "organisation_id"),
            actor_user_id=vocab.text(request.actor_user_id, "actor_user_id", max_len=128,
                                     required=False),
            event_type=vocab.text(request.event_type, "event_type", max_len=64,
                                  required=False),
            action=request.action and _choice(request.action, _audit.ACTIONS, "action"),
            outcome=request.outcome and _choice(request.outcome, _audit.OUTCOMES, "outcome"),
            since=from_timestamp(request.since, "since"),
            until=from_timestamp(request.until, "until"),
        )
        size = _inputs.page_size(request.page_size, default=100, maximum=1000)
        page = self._hub.query_events(access, flt, size, request.page_token,
                                      newest_first=request.newest_first,
                                      with_proofs=request.with_proofs)
        response = audit_pb2.QueryEventsResponse(
            events=[event_pb(r) for r in page.events], next_page_token=page.next_page_token,
            proofs=[proof_pb(p, page.checkpoint.size) for p in page.proven
                    ] if page.checkpoint else [])
        if page.checkpoint is not None:
            response.checkpoint.CopyFrom(
                checkpoint_pb(page.checkpoint, self._hub.checkpoint_public_key))
        return response

    @rpc("audit.checkpoint", "read", EVERYONE)
    def GetCheckpoint(self, access: _audit.Access, request: Any,
                      context: Any) -> audit_pb2.Checkpoint:
        return checkpoint_pb(self._hub.checkpoint(access), self._hub.checkpoint_public_key)

    @rpc("audit.verify", "verify", OFFICERS)
    def Verify(self, access: _audit.Access, request: Any,
               context: Any) -> audit_pb2.VerifyResponse:
        result, cp = self._hub.verify(access)
        return audit_pb2.VerifyResponse(
            ok=result.ok, size=result.size, first_bad_index=result.first_bad_index or 0,
            first_bad_event_id=result.first_bad_event_id or "", problem=result.problem or "",
            checkpoint=checkpoint_pb(cp, self._hub.checkpoint_public_key))

    @rpc("audit.proof", "read", EVERYONE)
    def GetInclusionProof(self, access: _audit.Access,
                          request: audit_pb2.GetInclusionProofRequest,
                          context: Any) -> audit_pb2.InclusionProof:
        leaf, proof = self._hub.inclusion_proof(access, request.index, request.tree_size)
        return audit_pb2.InclusionProof(index=request.index, tree_size=request.tree_size,
                                        leaf_hash=leaf, hashes=proof)

    @rpc("audit.consistency", "read", EVERYONE)
    def GetConsistencyProof(self, access: _audit.Access,
                            request: audit_pb2.GetConsistencyProofRequest,
                            context: Any) -> audit_pb2.ConsistencyProof:
        proof = self._hub.consistency_proof(access, request.from_size, request.to_size)
        return audit_pb2.ConsistencyProof(from_size=request.from_size,
                                          to_size=request.to_size, hashes=proof)

    @rpc("audit.subject_access", "search", OFFICERS)
    def SubjectAccess(self, access: _audit.Access, request: audit_pb2.SubjectAccessRequest,
                      context: Any) -> audit_pb2.SubjectAccessResponse:
        keys = _inputs.person_keys(list(request.keys), "keys")
        found = self._hub.subject_access(access, keys)
        size = found.checkpoint.size
        return audit_pb2.SubjectAccessResponse(
            signals=found.signals,
            checkpoint=checkpoint_pb(found.checkpoint, self._hub.checkpoint_public_key),
            household_refs=found.households,
            disclosures=[audit_pb2.Disclosure(event=event_pb(p.event), proof=proof_pb(p, size),
                                              names_person=p.event.seq in found.naming_person)
                         for p in found.disclosures])

    @rpc("audit.report", "search", OFFICERS)
    def GetReport(self, access: _audit.Access, request: audit_pb2.GetReportRequest,
                  context: Any) -> audit_pb2.Report:
        since = from_timestamp(request.since, "since")
        until = from_timestamp(request.until, "until")
        if since is None or until is None:
            raise InvalidInput("since and until are required")
        scope, figures = self._hub.report(access, since, until)
        return audit_pb2.Report(
            since=request.since, until=request.until, scope=scope,
            suppression_threshold=SUPPRESS_BELOW, rounded_to=ROUND_TO,
            figures=[audit_pb2.ReportFigure(name=n, value=v, description=d)
                     for n, v, d in figures])

    @rpc("audit.register", "read", OFFICERS)
    def GetProcessingRegister(self, access: _audit.Access, request: Any,
                              context: Any) -> audit_pb2.ProcessingRegister:
        covenants = self._hub.processing_register(access)
        return audit_pb2.ProcessingRegister(
            generated_at=to_timestamp(self._hub.now()),
            activities=[processing_pb(c, self._hub) for c in covenants])


def _choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field} must be one of {', '.join(allowed)}")
    return value


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, edge: _Edge) -> None:
        self._edge = edge
        self._hub = edge.hub

    @rpc("admin.organisation", "create", ADMIN)
    def RegisterOrganisation(self, access: _audit.Access,
                             request: admin_pb2.RegisterOrganisationRequest,
                             context: Any) -> admin_pb2.Organisation:
        return organisation_pb(self._hub.register_organisation(
            access, request.organisation_id, request.name))

    @rpc("admin.coordinator", "create", ADMIN)
    def RegisterCoordinator(self, access: _audit.Access,
                            request: admin_pb2.RegisterCoordinatorRequest,
                            context: Any) -> admin_pb2.Coordinator:
        contact = _inputs.contact(request.contact, "contact")
        return coordinator_pb(self._hub.register_coordinator(
            access, request.coordinator_id, request.organisation_id, contact,
            bytes(request.public_key)))

    @rpc("admin.covenant", "create", ADMIN)
    def RegisterCovenant(self, access: _audit.Access, request: admin_pb2.RegisterCovenantRequest,
                         context: Any) -> admin_pb2.Covenant:
        row, cov = self._hub.register_covenant(access, request.toml)
        return covenant_pb(row, cov)

    @rpc("admin.list", "read", ADMIN)
    def ListOrganisations(self, access: _audit.Access, request: Any,
                          context: Any) -> admin_pb2.ListOrganisationsResponse:
        orgs, _, _ = self._hub.list_registry(access)
        return admin_pb2.ListOrganisationsResponse(organisations=[organisation_pb(o) for o in orgs])

    @rpc("admin.list", "read", ADMIN)
    def ListCoordinators(self, access: _audit.Access, request: Any,
                         context: Any) -> admin_pb2.ListCoordinatorsResponse:
        _, coords, _ = self._hub.list_registry(access)
        return admin_pb2.ListCoordinatorsResponse(coordinators=[coordinator_pb(c) for c in coords])

    @rpc("admin.list", "read", ADMIN)
    def ListCovenants(self, access: _audit.Access, request: Any,
                      context: Any) -> admin_pb2.ListCovenantsResponse:
        _, _, covs = self._hub.list_registry(access)
        return admin_pb2.ListCovenantsResponse(covenants=[covenant_pb(r, c) for r, c in covs])

    @rpc("admin.profile", "create", ADMIN)
    def RegisterLinkageProfile(self, access: _audit.Access,
                               request: admin_pb2.RegisterLinkageProfileRequest,
                               context: Any) -> admin_pb2.LinkageProfile:
        if len(request.toml.encode()) > 64 * 1024:
            raise InvalidInput("a linkage profile is at most 64 KiB")
        row, _ = self._hub.register_profile(access, request.toml)
        return profile_pb(row)

    @rpc("admin.profile", "read", ADMIN)
    def ListLinkageProfiles(self, access: _audit.Access, request: Any,
                            context: Any) -> admin_pb2.ListLinkageProfilesResponse:
        return admin_pb2.ListLinkageProfilesResponse(
            profiles=[profile_pb(r) for r in self._hub.list_profiles(access)])


def profile_pb(row: Any) -> admin_pb2.LinkageProfile:
    return admin_pb2.LinkageProfile(
        profile_id=row.id, version=row.version, toml=row.source,
        source_sha256=row.source_sha256, registered_at=to_timestamp(row.registered_at))


def add_services(server: grpc.Server, hub: _core.Hub, identity: IdentityResolver,
                 stopping: threading.Event) -> None:
    edge = _Edge(hub, identity, stopping)
    signal_pb2_grpc.add_SignalServiceServicer_to_server(SignalService(edge), server)
    coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorService(edge), server)
    audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditService(edge), server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(AdminService(edge), server)

