from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent import (
    AllOf,
    AnyOf,
    ConsentBasis,
    ConsentGrant,
    CovenantBasis,
    MatchFacts,
    Reason,
    parse_covenant,
)
from tests.support import COVENANT

COV = parse_covenant(COVENANT)
AT = datetime(2026, 6, 1, tzinfo=UTC)
COVERED = MatchFacts(frozenset({"org-a", "org-b"}), frozenset({"youth_care", "housing"}),
                     frozenset({"GM0014"}))
NEEDS_CONSENT = MatchFacts(frozenset({"org-a", "org-b"}),
                           frozenset({"youth_care", "mental_health"}), frozenset({"GM0014"}))


def grant(**changes: object) -> ConsentGrant:
    values: dict[str, object] = {
        "id": "c1", "recorded_by": "org-a", "covenant_id": COV.id, "covenant_version": 0,
        "organisations": COV.parties, "purposes": frozenset({"care_coordination"}),
        "valid_from": AT - timedelta(days=1), "valid_until": AT + timedelta(days=30),
        "revoked_at": None}
    values.update(changes)
    return ConsentGrant(**values)  # type: ignore[arg-type]


def gate(*grants: ConsentGrant) -> AnyOf:
    return AnyOf(CovenantBasis(COV), *(ConsentBasis(g, COV) for g in grants))


def test_covenant_basis() -> None:
    decision = gate().decide(COVERED, AT)
    assert decision.permitted
    assert decision.reason is Reason.COVENANT
    assert decision.basis == COV.ref


def test_consent_basis_where_the_covenant_is_not_enough() -> None:
    decision = gate(grant()).decide(NEEDS_CONSENT, AT)
    assert decision.permitted
    assert decision.reason is Reason.CONSENT
    assert decision.basis == "consent:c1@test-covenant@v0"


def test_neither_basis_holds_the_match() -> None:
    decision = gate().decide(NEEDS_CONSENT, AT)
    assert not decision.permitted
    assert decision.reason is Reason.CATEGORY_NOT_COVERED
    assert decision.basis is None


def test_expired_covenant_denies_both_bases() -> None:
    later = COV.valid_until + timedelta(seconds=1)
    decision = gate(grant(valid_until=later + timedelta(days=1))).decide(COVERED, later)
    assert not decision.permitted
    assert decision.details == (Reason.COVENANT_NOT_IN_FORCE, Reason.COVENANT_NOT_IN_FORCE)


def test_revoked_consent_denies_from_the_moment_of_revocation() -> None:
    revoked = grant(revoked_at=AT)
    assert gate(revoked).decide(NEEDS_CONSENT, AT - timedelta(seconds=1)).permitted
    decision = gate(revoked).decide(NEEDS_CONSENT, AT)
    assert not decision.permitted
    assert decision.details == (Reason.CATEGORY_NOT_COVERED, Reason.CONSENT_REVOKED)


@pytest.mark.parametrize(("consent", "facts", "reason"), [
    (grant(valid_until=AT), NEEDS_CONSENT, Reason.CONSENT_EXPIRED),
    (grant(valid_from=AT + timedelta(days=1)), NEEDS_CONSENT, Reason.CONSENT_NOT_YET_VALID),
    (grant(covenant_id="another"), NEEDS_CONSENT, Reason.CONSENT_OUT_OF_SCOPE),
    (grant(purposes=frozenset({"research"})), NEEDS_CONSENT, Reason.CONSENT_OUT_OF_SCOPE),
    (grant(), MatchFacts(frozenset({"org-a", "org-z"}), frozenset({"youth_care"}),
                         frozenset({"GM0014"})), Reason.CONSENT_OUT_OF_SCOPE),
    (grant(organisations=frozenset({"org-a", "org-b"})),
     MatchFacts(frozenset({"org-a", "org-c"}), frozenset({"mental_health"}),
                frozenset({"GM0014"})), Reason.CONSENT_OUT_OF_SCOPE),
    (grant(recorded_by="org-c"), NEEDS_CONSENT, Reason.CONSENT_RECORDER_NOT_INVOLVED),
    (grant(), MatchFacts(frozenset({"org-a", "org-b"}), frozenset({"youth_care"}),
                         frozenset({"GM0363"})), Reason.REGION_NOT_COVERED),
])
def test_consent_denials(consent: ConsentGrant, facts: MatchFacts, reason: Reason) -> None:
    decision = ConsentBasis(consent, COV).decide(facts, AT)
    assert not decision.permitted
    assert decision.reason is reason


def test_unknown_purpose_category_or_organisation_denies_the_covenant() -> None:
    assert CovenantBasis(COV).decide(
        MatchFacts(COVERED.organisations, COVERED.categories, COVERED.regions, "research"),
        AT).reason is Reason.PURPOSE_NOT_COVERED
    assert CovenantBasis(COV).decide(
        MatchFacts(COVERED.organisations, frozenset({"police"}), COVERED.regions),
        AT).reason is Reason.CATEGORY_NOT_COVERED
    assert CovenantBasis(COV).decide(
        MatchFacts(frozenset(), COVERED.categories, COVERED.regions),
        AT).reason is Reason.ORGANISATION_NOT_PARTY


def test_empty_policies_deny() -> None:
    assert AnyOf().decide(COVERED, AT).reason is Reason.EMPTY_POLICY
    assert AllOf().decide(COVERED, AT).reason is Reason.EMPTY_POLICY
    assert not AnyOf().decide(COVERED, AT).permitted


def test_all_of_needs_every_part() -> None:
    both = AllOf(CovenantBasis(COV), ConsentBasis(grant(), COV))
    decision = both.decide(COVERED, AT)
    assert decision.permitted and decision.basis == f"{COV.ref}+consent:c1@test-covenant@v0"
    assert not AllOf(CovenantBasis(COV), ConsentBasis(grant(revoked_at=AT), COV)).decide(
        COVERED, AT).permitted


def test_policies_refuse_wrong_parts() -> None:
    with pytest.raises(TypeError):
        AnyOf("covenant")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CovenantBasis("test-covenant")  # type: ignore[arg-type]


@given(st.permutations([0, 1, 2]), st.booleans())
def test_any_of_permits_whatever_the_order(order: list[int], valid: bool) -> None:
    parts = [CovenantBasis(COV), ConsentBasis(grant(revoked_at=AT), COV),
             ConsentBasis(grant(id="c2", revoked_at=None if valid else AT), COV)]
    decision = AnyOf(*(parts[i] for i in order)).decide(NEEDS_CONSENT, AT)
    assert decision.permitted is valid
    assert (decision.basis == "consent:c2@test-covenant@v0") is valid
