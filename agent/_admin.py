"""The covenant administrator's client: organisations, coordinators, covenants."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent._client import HubUser
from exchange import config, rpc, tls
from exchange.errors import InvalidInput
from exchange.v1 import admin_pb2, common_pb2


@config.section("admin")
@dataclass(frozen=True)
class AdminSettings(tls.TlsClientSettings):
    organisation: str
    user: str = "administrator"
    hub: str = "127.0.0.1:50051"


class Admin(HubUser):
    def __init__(self, settings: AdminSettings) -> None:
        super().__init__(settings.hub,
                         rpc.Caller(settings.organisation, settings.user, "administrator"),
                         settings.client_tls())

    def organisation(self, organisation_id: str, name: str) -> admin_pb2.Organisation:
        return self.hub.call(self.hub.admin.RegisterOrganisation,
                             admin_pb2.RegisterOrganisationRequest(
                                 organisation_id=organisation_id, name=name))

    def coordinator(self, coordinator_id: str, organisation_id: str, name: str, phone: str,
                    email: str, public_key: bytes) -> admin_pb2.Coordinator:
        return self.hub.call(self.hub.admin.RegisterCoordinator,
                             admin_pb2.RegisterCoordinatorRequest(
                                 coordinator_id=coordinator_id, organisation_id=organisation_id,
                                 contact=common_pb2.Contact(name=name, phone=phone, email=email),
                                 public_key=public_key))

    def covenant(self, path: Path) -> tuple[admin_pb2.Covenant, bool]:
        """Register a covenant file; returns it and whether its text was unchanged."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read covenant file {path}: {exc}") from None
        before = {c.covenant_id: c.version for c in self.hub.call(
            self.hub.admin.ListCovenants, admin_pb2.ListCovenantsRequest()).covenants}
        cov = self.hub.call(self.hub.admin.RegisterCovenant,
                            admin_pb2.RegisterCovenantRequest(toml=text))
        return cov, before.get(cov.covenant_id) == cov.version

    def profile(self, path: Path) -> tuple[admin_pb2.LinkageProfile, bool]:
        """Register a linkage profile file; returns it and whether it was unchanged."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read linkage profile {path}: {exc}") from None
        before = {p.profile_id: p.version for p in self.profiles()}
        made = self.hub.call(self.hub.admin.RegisterLinkageProfile,
                             admin_pb2.RegisterLinkageProfileRequest(toml=text))
        return made, before.get(made.profile_id) == made.version

    def profiles(self) -> list[admin_pb2.LinkageProfile]:
        return list(self.hub.call(self.hub.admin.ListLinkageProfiles,
                                  admin_pb2.ListLinkageProfilesRequest()).profiles)

    def registry(self) -> tuple[list[admin_pb2.Organisation], list[admin_pb2.Coordinator],
                                list[admin_pb2.Covenant]]:
        orgs = self.hub.call(self.hub.admin.ListOrganisations,
                             admin_pb2.ListOrganisationsRequest()).organisations
        coords = self.hub.call(self.hub.admin.ListCoordinators,
                               admin_pb2.ListCoordinatorsRequest()).coordinators
        covs = self.hub.call(self.hub.admin.ListCovenants,
                             admin_pb2.ListCovenantsRequest()).covenants
        return list(orgs), list(coords), list(covs)
