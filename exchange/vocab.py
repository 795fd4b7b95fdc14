"""Shared vocabulary and the format checks every party applies the same way."""

from __future__ import annotations

import re
import uuid

from exchange.errors import InvalidInput

# Coarse signal categories. A signal carries one; alerts never show it.
CATEGORIES: dict[str, str] = {
    "youth_care": "youth care and child development (jeugdhulp)",
    "child_safety": "child safety concern (kindveiligheid)",
    "housing": "housing: rent arrears, nuisance, eviction risk (wonen)",
    "debt": "problematic debt (schulden)",
    "income": "income and benefits (inkomen)",
    "education": "school absence or drop-out (onderwijs)",
    "employment": "work and reintegration (werk)",
    "social_support": "social support and care at home (Wmo, sociaal team)",
    "health": "physical health (gezondheid)",
    "mental_health": "mental health care (GGZ)",
    "addiction": "addiction care (verslavingszorg)",
    "domestic_violence": "domestic violence or child abuse (huiselijk geweld)",
    "police": "police and justice (politie en justitie)",
}

ROLES = ("partner", "coordinator", "privacy_officer", "administrator", "key_client")

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:#-]{0,127}")
_REGION = re.compile(r"^GM[0-9]{4}$")
_PHONE = re.compile(r"^\+?[0-9(][0-9 ()-]{4,18}[0-9]$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,}$")


def slug(value: str, field: str) -> str:
    """An id: lowercase letters, digits and inner hyphens, 1 to 64 characters."""
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise InvalidInput(f"{field} must be 1-64 lowercase letters, digits or hyphens")
    return value


def code(value: str, field: str) -> str:
    """A code such as a purpose: lowercase letters, digits and underscores."""
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise InvalidInput(f"{field} must be a code of lowercase letters, digits and '_'")
    return value


def reference(value: str, field: str) -> str:
    """A partner's reference code (e.g. a form id): no spaces, so no names."""
    if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
        raise InvalidInput(f"{field} must be a reference code of letters, digits and "
                           "._/:#- (no spaces), at most 128 characters")
    return value


def region(value: str, field: str = "region") -> str:
    """A CBS municipality code such as GM0014."""
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise InvalidInput(f"{field} must be a CBS municipality code like GM0014")
    return value


def category(value: str, field: str = "category") -> str:
    if value not in CATEGORIES:
        raise InvalidInput(f"{field} is not a known category code (see docs/contract.md)")
    return value


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def uuid_str(value: str, field: str) -> str:
    """A UUID in canonical lowercase form."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # (what the checks below accept, at a fifth of their cost)
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"{field} must be a UUID") from exc
    if str(parsed) != value:
        raise InvalidInput(f"{field} must be a UUID in canonical lowercase form")
    return value


def uuid_prefix(value: str, field: str) -> str:
    """The first 8 to 36 characters of a UUID in canonical lowercase form."""
    if not 8 <= len(value) <= 36 or any(
            c != "-" if i in (8, 13, 18, 23) else c not in "0123456789abcdef"
            for i, c in enumerate(value)):
        raise InvalidInput(f"{field} must be 8 to 36 characters of a UUID in canonical "
                           "lowercase form")
    return value


def text(value: str, field: str, *, max_len: int, required: bool = True) -> str:
    """Printable single-line text of bounded length."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text")
    if required and not value.strip():
        raise InvalidInput(f"{field} is required")
    if len(value) > max_len:
        raise InvalidInput(f"{field} is longer than {max_len} characters")
    if any(not ch.isprintable() for ch in value):
        raise InvalidInput(f"{field} contains control characters")
    return value


def phone(value: str, field: str) -> str:
    if value and not _PHONE.fullmatch(value):
        raise InvalidInput(f"{field} is not a phone number")
    return value


def email(value: str, field: str) -> str:
    if value and not _EMAIL.fullmatch(value):
        raise InvalidInput(f"{field} is not an e-mail address")
    return value
