"""The household identity inside an envelope, and the envelope's binding context.

The plaintext is a small versioned JSON document. The HPKE ``info`` binds each
envelope to its signal, its sender and its recipient, so the hub cannot move an
envelope to another signal or organisation without the coordinator noticing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from exchange.errors import VerificationError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Identity:
    bsn: str
    given_names: str
    surname_prefix: str
    surname: str
    date_of_birth: str
    street: str
    house_number: str
    postcode: str
    city: str
    case_reference: str

    def to_bytes(self, signal_id: str, organisation_id: str) -> bytes:
        body = {"v": FORMAT_VERSION, "signal_id": signal_id,
                "organisation_id": organisation_id, **asdict(self)}
        return json.dumps(body, sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, signal_id: str, organisation_id: str) -> Identity:
        """Parse an opened envelope; it must name the signal and sender it came with."""
        try:
            body = json.loads(data)
            if (body.pop("v") != FORMAT_VERSION or body.pop("signal_id") != signal_id
                    or body.pop("organisation_id") != organisation_id):
                raise VerificationError()
            return cls(**body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VerificationError() from exc

    def display_name(self) -> str:
        return " ".join(p for p in (self.given_names, self.surname_prefix, self.surname) if p)


def envelope_context(signal_id: str, organisation_id: str, recipient_id: str) -> bytes:
    """HPKE info for one envelope."""
    return b"\x00".join([b"samenloop/v1 envelope", signal_id.encode(),
                         organisation_id.encode(), recipient_id.encode()])
