"""The one error hierarchy every party shares.

Messages are written for the person who must act on them and never carry
personal data: no BSN, name, date of birth, address or signal payload. Use ids,
field names, row numbers and counts. The gRPC edge maps each class to one status
code in one place (exchange.rpc).
"""

from __future__ import annotations


class SamenloopError(Exception):
    """Base of every error Samenloop raises on purpose.

    ``subject_ref`` and ``detail`` (ids only) let the access log record which
    household and objects a refused request concerned.
    """

    def __init__(self, message: str = "", *, subject_ref: str = "",
                 detail: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.subject_ref = subject_ref
        self.detail = detail or {}


class InvalidInput(SamenloopError):
    """The request or input is malformed, out of range or inconsistent."""


class ConfigError(InvalidInput):
    """A setting is unknown, missing or of the wrong type."""


class NotFound(SamenloopError):
    """The object does not exist, or is not visible to the caller."""


class AlreadyExists(SamenloopError):
    """An object with this id exists with different content."""


class FailedPrecondition(SamenloopError):
    """The system is not in the state the request needs (e.g. a rotated key)."""


class PermissionDenied(SamenloopError):
    """The caller's role or organisation does not allow this."""


class Unauthenticated(SamenloopError):
    """The caller's identity could not be established."""


class Unavailable(SamenloopError):
    """A service could not be reached; the operation may be retried."""


class RateLimited(Unavailable):
    """The caller used a service faster than it allows; retry after a while."""


class VerificationError(SamenloopError):
    """A proof, signature or ciphertext did not verify.

    Deliberately vague: it never says which check failed or why.
    """

    def __init__(self, message: str = "verification failed") -> None:
        super().__init__(message)


class IntegrityError(SamenloopError):
    """Stored data (e.g. the access log) is inconsistent with its own hashes."""
