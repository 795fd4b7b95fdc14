"""``samenloop hub ...`` and ``samenloop keyservice ...``."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import Any

from exchange import config, tls


def register(sub: Any) -> None:
    hub = sub.add_parser("hub", help="run the matching hub (central service)",
                         description="Run and maintain the matching hub.")
    hub_sub = hub.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = hub_sub.add_parser(
        "serve", help="serve the signal, coordinator, audit and admin services",
        description="Serve the hub's gRPC services until SIGINT or SIGTERM, then finish "
        "in-flight requests and stop. Prints 'hub listening on HOST:PORT' and the "
        "checkpoint key privacy officers pin, when ready.")
    serve.add_argument("--listen", metavar="HOST:PORT",
                       help="address to listen on (default 127.0.0.1:50051; port 0 picks one)")
    serve.add_argument("--database-url", metavar="URL",
                       help="SQLAlchemy URL (default sqlite:///samenloop-hub.db)")
    serve.add_argument("--checkpoint-key", type=Path, metavar="FILE",
                       help="Ed25519 key signing log checkpoints; created when missing")
    serve.add_argument("--migrate", action="store_true", default=None,
                       help="upgrade the database schema before serving")
    serve.add_argument("--oversight-organisation", action="append", metavar="ID",
                       dest="oversight_organisations",
                       help="an organisation whose privacy officers see the whole access log, "
                       "usually the municipality (repeatable)")
    tls.add_server_flags(serve)
    _ops_flag(serve)
    serve.set_defaults(func=_serve_hub, server=True)

    prune = hub_sub.add_parser(
        "prune-log", help="remove access events past their retention period",
        description="Remove the access events up to the newest checkpoint signed before "
        "DATE, as one whole range. Their leaf hashes stay, so every root and proof still "
        "verifies, and the removal is logged. Refused while DATE is within the retention "
        "period (at least 5 years).")
    prune.add_argument("--before", required=True, metavar="YYYY-MM-DD",
                       help="remove events covered by a checkpoint signed before this day")
    prune.add_argument("--database-url", metavar="URL", help="SQLAlchemy URL")
    prune.add_argument("--checkpoint-key", type=Path, metavar="FILE",
                       help="the hub's checkpoint key (default hub-checkpoint.key)")
    prune.set_defaults(func=_prune)

    hub_keygen = hub_sub.add_parser(
        "keygen", help="create the key that signs the access log's checkpoints",
        description="Create the Ed25519 checkpoint key (mode 0600; never overwrites one) "
        "and print its public key, which privacy officers and agents pin. Every replica of "
        "one hub uses the same key; 'hub serve' creates it when missing, so this is for "
        "deployments that hand the key to several replicas.")
    hub_keygen.add_argument("--checkpoint-key", type=Path, metavar="FILE",
                            help="where to write it (default hub-checkpoint.key)")
    hub_keygen.set_defaults(func=_hub_keygen)

    mig = hub_sub.add_parser("migrate", help="create or upgrade the hub database schema",
                             description="Apply every pending Alembic migration.")
    mig.add_argument("--database-url", metavar="URL", help="SQLAlchemy URL")
    mig.set_defaults(func=_migrate)

    ks = sub.add_parser("keyservice", help="run the OPRF key service",
                        description="Run the key service that holds the OPRF key.")
    ks_sub = ks.add_subparsers(dest="command", metavar="COMMAND", required=True)
    keygen = ks_sub.add_parser("keygen", help="create a new OPRF private key file",
                               description="Create a new OPRF key (never overwrites a file).")
    keygen.add_argument("--key-file", type=Path, metavar="FILE",
                        help="where to write the key (default oprf.key)")
    keygen.set_defaults(func=_keygen)
    ks_serve = ks_sub.add_parser(
        "serve", help="serve OPRF evaluations",
        description="Serve the key service until SIGINT or SIGTERM. Prints "
        "'key service listening on HOST:PORT' when ready.")
    ks_serve.add_argument("--listen", metavar="HOST:PORT",
                          help="address to listen on (default 127.0.0.1:50052)")
    ks_serve.add_argument("--key-file", type=Path, metavar="FILE",
                          help="the OPRF private key (default oprf.key)")
    ks_serve.add_argument("--previous-key-file", type=Path, metavar="FILE",
                          help="during a key rotation: the key being retired, still "
                          "evaluated when asked for by its id")
    tls.add_server_flags(ks_serve)
    _ops_flag(ks_serve)
    ks_serve.set_defaults(func=_serve_keyservice, server=True)


def _ops_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ops-listen", metavar="HOST:PORT",
                   help="serve /healthz, /readyz and Prometheus /metrics over HTTP here "
                   "(default: not at all)")


def _hub_settings(args: argparse.Namespace) -> Any:
    from hub import HubSettings

    return config.load(HubSettings, path=args.config, overrides={
        "listen": getattr(args, "listen", None),
        "database_url": args.database_url,
        "checkpoint_key": getattr(args, "checkpoint_key", None),
        "migrate": getattr(args, "migrate", None),
        "oversight_organisations": getattr(args, "oversight_organisations", None),
        "ops_listen": getattr(args, "ops_listen", None),
        **tls.server_overrides(args),
    })


def _hub_keygen(args: argparse.Namespace) -> int:
    from exchange import checkpoint
    from exchange.errors import AlreadyExists

    path = args.checkpoint_key or Path("hub-checkpoint.key")
    if path.exists():
        raise AlreadyExists(f"{path} exists; a key is never overwritten")
    signer = checkpoint.CheckpointSigner.load_or_create(path, "samenloop")
    print(f"wrote the checkpoint key to {path}; public key {signer.public_key.hex()}")
    return 0


def _settle_heap() -> None:
    """What starting a server made (modules, settings, parsed statements) lives as long
    as the process: keep it out of the collector's full passes, which under load would
    otherwise walk its ~130,000 objects every few seconds (9 % of a hub's CPU at ingest,
    50 ms a pass)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 10)


def _serve_hub(args: argparse.Namespace) -> int:
    from hub import start_hub

    running = start_hub(_hub_settings(args))
    _settle_heap()
    print(f"hub listening on {running.address} (checkpoint origin {running.hub.origin}, "
          f"key {running.hub.checkpoint_public_key.hex()})", flush=True)
    running.wait()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from exchange.db import current_revision, make_engine, redact_url
    from hub import migrate_database

    settings = _hub_settings(args)
    engine = make_engine(settings.database_url)
    before = current_revision(engine)
    engine.dispose()
    migrate_database(settings.database_url)
    engine = make_engine(settings.database_url)
    after = current_revision(engine)
    engine.dispose()
    where = redact_url(settings.database_url)
    if before is None:
        print(f"created the hub schema (revision {after}) in {where}")
    elif before == after:
        print(f"{where} was already at the newest schema (revision {after})")
    else:
        print(f"upgraded {where} from revision {before} to {after}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    import getpass
    import uuid
    from datetime import UTC, datetime

    from exchange.errors import InvalidInput
    from hub._audit import Access
    from hub._server import open_hub

    try:
        before = datetime.strptime(args.before, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput("--before must be a date like 2021-01-01") from None
    hub = open_hub(_hub_settings(args))
    try:
        operator = Access("samenloop-hub", getpass.getuser(), "administrator",
                          str(uuid.uuid4()), "local")
        first, upto = hub.prune_log(operator, before)
    finally:
        hub.close()
    print(f"pruned access events #{first} to #{upto - 1}; their leaf hashes remain, so the "
          "log still verifies")
    return 0


def _ks_settings(args: argparse.Namespace) -> Any:
    from hub import KeyServiceSettings

    return config.load(KeyServiceSettings, path=args.config, overrides={
        "listen": getattr(args, "listen", None), "key_file": args.key_file,
        "previous_key_file": getattr(args, "previous_key_file", None),
        "ops_listen": getattr(args, "ops_listen", None), **tls.server_overrides(args)})


def _keygen(args: argparse.Namespace) -> int:
    from exchange import crypto
    from exchange.errors import AlreadyExists

    path = _ks_settings(args).key_file
    key = crypto.OprfKey.generate()
    try:
        key.save(path)
    except FileExistsError:
        raise AlreadyExists(f"{path} exists; a key is never overwritten") from None
    print(f"wrote OPRF key {key.key_id} to {path}")
    return 0


def _serve_keyservice(args: argparse.Namespace) -> int:
    from hub import start_keyservice

    running = start_keyservice(_ks_settings(args))
    _settle_heap()
    print(f"key service listening on {running.address}", flush=True)
    sys.stdout.flush()
    running.wait()
    return 0
