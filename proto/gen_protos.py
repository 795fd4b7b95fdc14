"""Regenerate the Python stubs for the samenloop.v1 contract into exchange/v1/.

Usage: python proto/gen_protos.py [--out DIR]

The output (messages, gRPC stubs and their .pyi type stubs) is committed and never
edited by hand; tests/unit/exchange/test_generated.py regenerates into a temporary
directory and fails when the committed files differ.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIR = Path("samenloop") / "v1"
TARGET_PACKAGE = "exchange.v1"
HEADER = '"""Generated from proto/samenloop/v1 by proto/gen_protos.py. Do not edit."""\n'
_MODULE_REF = re.compile(r"\bsamenloop\.v1\.(\w+_pb2(?:_grpc)?)\b")
_FROM_IMPORT = re.compile(r"^from samenloop\.v1 import ", re.MULTILINE)


def _plugin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install the dev dependencies (make test does)")
    return found


def generate(out_dir: Path) -> list[Path]:
    """Generate every stub into out_dir (the exchange/v1 package); return the files."""
    import grpc_tools  # type: ignore[import-untyped]

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{PROTO_ROOT}", f"-I{include}",
            f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
            f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
            f"--python_out={tmp}", f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}", f"--mypy_grpc_out={tmp}",
            *(str(p.relative_to(PROTO_ROOT)) for p in protos),
        ]
        subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        written = [out_dir / "__init__.py"]
        written[0].write_text(HEADER)
        for src in sorted((Path(tmp) / PACKAGE_DIR).iterdir()):
            text = _FROM_IMPORT.sub(f"from {TARGET_PACKAGE} import ", src.read_text())
            text = _MODULE_REF.sub(rf"{TARGET_PACKAGE}.\1", text)
            dest = out_dir / src.name
            dest.write_text(text)
            written.append(dest)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "exchange" / "v1")
    args = parser.parse_args()
    files = generate(args.out)
    print(f"wrote {len(files)} files to {args.out}")


if __name__ == "__main__":
    main()
