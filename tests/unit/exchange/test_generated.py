"""The committed stubs in exchange/v1 are exactly what proto/gen_protos.py generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "proto" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    fresh = {p.name: p.read_bytes() for p in gen.generate(tmp_path / "v1")}
    committed = {p.name: p.read_bytes() for p in (ROOT / "exchange" / "v1").iterdir()
                 if p.is_file()}
    assert sorted(fresh) == sorted(committed), "files differ: run `make protos`"
    stale = sorted(name for name in fresh if fresh[name] != committed[name])
    assert not stale, f"stale generated stubs {stale}: run `make protos` and commit"


def test_every_proto_file_has_stubs() -> None:
    protos = {p.stem for p in (ROOT / "proto" / "samenloop" / "v1").glob("*.proto")}
    generated = {p.name.removesuffix("_pb2.py")
                 for p in (ROOT / "exchange" / "v1").glob("*_pb2.py")}
    assert protos == generated
