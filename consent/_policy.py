"""Disclosure decisions as composable policies.

A :class:`Policy` decides whether a match may be disclosed to a coordinator. Rules
compose with :class:`AnyOf` and :class:`AllOf`; an empty composition denies, and so
does anything unknown, expired or not yet valid. Every decision carries a reason code
and, when permitted, the basis (covenant version or consent id) for the access log.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from consent._covenant import CARE_COORDINATION, Covenant


class Reason(StrEnum):
    COVENANT = "covenant"
    CONSENT = "consent"
    EMPTY_POLICY = "empty_policy"
    COVENANT_NOT_IN_FORCE = "covenant_not_in_force"
    ORGANISATION_NOT_PARTY = "organisation_not_party"
    CATEGORY_NOT_COVERED = "category_not_covered"
    REGION_NOT_COVERED = "region_not_covered"
    PURPOSE_NOT_COVERED = "purpose_not_covered"
    CONSENT_REVOKED = "consent_revoked"
    CONSENT_EXPIRED = "consent_expired"
    CONSENT_NOT_YET_VALID = "consent_not_yet_valid"
    CONSENT_OUT_OF_SCOPE = "consent_out_of_scope"
    CONSENT_RECORDER_NOT_INVOLVED = "consent_recorder_not_involved"
    # This signal has a basis, but no other organisation's signal has one: no match.
    NO_OTHER_PARTY_WITH_BASIS = "no_other_party_with_basis"


@dataclass(frozen=True)
class MatchFacts:
    """What the gate knows about a match: no identities, no case content."""

    organisations: frozenset[str]
    categories: frozenset[str]
    regions: frozenset[str]
    purpose: str = CARE_COORDINATION
    # Every party organisation involved in the household (defaults to organisations):
    # a consent counts only when the partner who recorded it is one of them.
    household_organisations: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    permitted: bool
    reason: Reason
    basis: str | None = None
    # Reasons of the parts of a composed policy, for the log.
    details: tuple[Reason, ...] = field(default=())

    @staticmethod
    def deny(reason: Reason, details: tuple[Reason, ...] = ()) -> Decision:
        return Decision(False, reason, None, details)


@dataclass(frozen=True)
class ConsentGrant:
    """A consent record as the gate sees it.

    Its scope is the covenant version it was given under and that version's parties
    (``organisations``): a party added to the covenant later is not covered. It counts
    only while the partner who recorded it is itself involved in the match.
    """

    id: str
    recorded_by: str
    covenant_id: str
    covenant_version: int
    organisations: frozenset[str]
    purposes: frozenset[str]
    valid_from: datetime
    valid_until: datetime
    revoked_at: datetime | None = None

    @property
    def ref(self) -> str:
        return f"consent:{self.id}@{self.covenant_id}@v{self.covenant_version}"


class Policy(abc.ABC):
    @abc.abstractmethod
    def decide(self, facts: MatchFacts, at: datetime) -> Decision: ...


def _frame(covenant: Covenant, facts: MatchFacts, at: datetime) -> Reason | None:
    """The conditions every basis under a covenant needs: in force, parties, region."""
    if not covenant.in_force(at):
        return Reason.COVENANT_NOT_IN_FORCE
    if not facts.organisations or not facts.organisations <= covenant.parties:
        return Reason.ORGANISATION_NOT_PARTY
    if not facts.regions or not facts.regions <= covenant.regions:
        return Reason.REGION_NOT_COVERED
    return None


class CovenantBasis(Policy):
    """The covenant itself covers every organisation, category, region and the purpose."""

    def __init__(self, covenant: Covenant) -> None:
        if not isinstance(covenant, Covenant):
            raise TypeError("CovenantBasis needs a Covenant")
        self.covenant = covenant

    def decide(self, facts: MatchFacts, at: datetime) -> Decision:
        problem = _frame(self.covenant, facts, at)
        if problem is None and facts.purpose not in self.covenant.purposes:
            problem = Reason.PURPOSE_NOT_COVERED
        if problem is None and (
            not facts.categories or not facts.categories <= self.covenant.covered_categories
        ):
            problem = Reason.CATEGORY_NOT_COVERED
        if problem is not None:
            return Decision.deny(problem)
        return Decision(True, Reason.COVENANT, self.covenant.ref)


class ConsentBasis(Policy):
    """The household's valid consent, scoped to the covenant and the purpose."""

    def __init__(self, grant: ConsentGrant, covenant: Covenant) -> None:
        if not isinstance(grant, ConsentGrant) or not isinstance(covenant, Covenant):
            raise TypeError("ConsentBasis needs a ConsentGrant and a Covenant")
        self.grant = grant
        self.covenant = covenant

    def decide(self, facts: MatchFacts, at: datetime) -> Decision:
        g = self.grant
        if g.revoked_at is not None and g.revoked_at <= at:
            return Decision.deny(Reason.CONSENT_REVOKED)
        if at < g.valid_from:
            return Decision.deny(Reason.CONSENT_NOT_YET_VALID)
        if at >= g.valid_until:
            return Decision.deny(Reason.CONSENT_EXPIRED)
        if (g.covenant_id != self.covenant.id or facts.purpose not in g.purposes
                or not facts.organisations <= g.organisations):
            return Decision.deny(Reason.CONSENT_OUT_OF_SCOPE)
        if g.recorded_by not in (facts.household_organisations or facts.organisations):
            return Decision.deny(Reason.CONSENT_RECORDER_NOT_INVOLVED)
        problem = _frame(self.covenant, facts, at)
        if problem is not None:
            return Decision.deny(problem)
        return Decision(True, Reason.CONSENT, g.ref)


class AnyOf(Policy):
    """Permits when one part permits (the first, in order); empty denies.

    A denial carries the first part's reason, and every part's reason in ``details``.
    """

    def __init__(self, *policies: Policy) -> None:
        if not all(isinstance(p, Policy) for p in policies):
            raise TypeError("AnyOf takes policies")
        self.policies = policies

    def decide(self, facts: MatchFacts, at: datetime) -> Decision:
        if not self.policies:
            return Decision.deny(Reason.EMPTY_POLICY)
        reasons = []
        for policy in self.policies:
            decision = policy.decide(facts, at)
            if decision.permitted:
                return decision
            reasons.append(decision.reason)
        return Decision.deny(reasons[0], tuple(reasons))


class AllOf(Policy):
    """Permits when every part permits; empty denies. The basis joins the parts'."""

    def __init__(self, *policies: Policy) -> None:
        if not all(isinstance(p, Policy) for p in policies):
            raise TypeError("AllOf takes policies")
        self.policies = policies

    def decide(self, facts: MatchFacts, at: datetime) -> Decision:
        if not self.policies:
            return Decision.deny(Reason.EMPTY_POLICY)
        decisions = [p.decide(facts, at) for p in self.policies]
        for decision in decisions:
            if not decision.permitted:
                return Decision.deny(decision.reason, tuple(d.reason for d in decisions))
        return Decision(
            True, decisions[0].reason, "+".join(d.basis or "" for d in decisions),
            tuple(d.reason for d in decisions),
        )
