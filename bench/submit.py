"""Signals per second through the real path: agent -> key service -> hub over gRPC.

Starts a key service and a hub on loopback (SQLite, or --database-url), registers two
partners and a covenant, writes synthetic exports and times each partner's agent.

    python bench/submit.py [--records 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from agent import Admin, AdminSettings, Agent, AgentSettings
from exchange import crypto
from hub import HubSettings, KeyServiceSettings, start_hub, start_keyservice
from hub._demo import COVENANT, FIELDS, bsn_from


def write_export(path: Path, org: str, category: str, offset: int, n: int) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for i in range(n):
            writer.writerow({
                "case_ref": f"{org}-{i}", "bsn": bsn_from(offset + i), "given_names": "Test",
                "surname": "Person", "date_of_birth": "2001-02-03", "street": "Teststraat",
                "house_number": str(offset + i + 1), "postcode": "9711 AB",
                "city": "Groningen", "category": category, "region": "GM0014",
                "professional_name": "Pat", "professional_phone": "050 1234567",
                "professional_email": ""})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ks = start_keyservice(KeyServiceSettings(listen="127.0.0.1:0"),
                              key=crypto.OprfKey.generate())
        hub = start_hub(HubSettings(listen="127.0.0.1:0", checkpoint_key=root / "cp.key",
                                    database_url=args.database_url or f"sqlite:///{root}/h.db",
                                    migrate=True))
        try:
            key = crypto.EnvelopeKey.generate()
            with Admin(AdminSettings(organisation="gemeente-noord", hub=hub.address)) as adm:
                for org in ("gemeente-noord", "jeugdzorg-noord", "woonstad-noord",
                            "schuldhulp-noord"):
                    adm.organisation(org, org)
                adm.coordinator("regie-noord", "gemeente-noord", "R", "050 1234567", "",
                                key.public_key)
                (root / "cov.toml").write_text(COVENANT)
                adm.covenant(root / "cov.toml")
            n = args.records
            for org, category, offset in (("jeugdzorg-noord", "youth_care", 0),
                                          ("woonstad-noord", "housing", n // 2)):
                path = write_export(root / f"{org}.csv", org, category, offset, n)
                with Agent(AgentSettings(organisation=org, hub=hub.address,
                                         keyservice=ks.address,
                                         state_database=f"sqlite:///{root}/{org}.db")) as a:
                    start = time.perf_counter()
                    summary = a.submit_file(path)
                    took = time.perf_counter() - start
                print(f"{org}: {summary.submitted} signals in {took:.2f} s "
                      f"= {summary.submitted / took:,.0f} signals/s "
                      f"({summary.pseudonyms} pseudonyms)")
        finally:
            hub.stop(1)
            ks.stop(1)


if __name__ == "__main__":
    main()
