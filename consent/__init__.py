"""Covenants, consent and disclosure decisions.

The whole public surface: parse a covenant file with :func:`parse_covenant`, build a
policy from :class:`CovenantBasis`, :class:`ConsentBasis`, :class:`AnyOf` and
:class:`AllOf`, and call ``policy.decide(facts, at)`` for a :class:`Decision`.
"""

from consent._covenant import CARE_COORDINATION, Covenant, CovenantError, parse_covenant
from consent._policy import (
    AllOf,
    AnyOf,
    ConsentBasis,
    ConsentGrant,
    CovenantBasis,
    Decision,
    MatchFacts,
    Policy,
    Reason,
)

__all__ = [
    "CARE_COORDINATION",
    "AllOf",
    "AnyOf",
    "ConsentBasis",
    "ConsentGrant",
    "Covenant",
    "CovenantBasis",
    "CovenantError",
    "Decision",
    "MatchFacts",
    "Policy",
    "Reason",
    "parse_covenant",
]
