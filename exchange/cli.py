"""The one ``samenloop`` command.

Each role's subcommands are defined next to the code they drive and added here:
``hub`` and ``keyservice`` (hub._cli), ``agent``, ``coordinator``, ``audit`` and
``admin`` (agent._cli), ``pki`` (exchange._pki), ``demo`` (hub._demo), ``synth``
(agent._synth) and ``bench`` (hub._bench). Errors are caught once, in
:func:`main`, and printed as one line; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from exchange import log
from exchange.errors import SamenloopError

# Modules that contribute subcommands through register(subparsers).
_COMMAND_MODULES = ("hub._cli", "agent._cli", "exchange._pki", "hub._demo", "agent._synth",
                    "hub._bench")
PROG = "samenloop"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Samenloop: privacy-preserving signal exchange between organisations that "
            "work with the same households. One command, a subcommand per role."
        ),
        epilog="Settings come from --config FILE (or SAMENLOOP_CONFIG), then "
        "SAMENLOOP_<SECTION>_<KEY> environment variables, then flags.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging; with an error, show the traceback")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML settings file (sections per role)")
    parser.add_argument("--log-format", choices=("auto", "console", "json"), default="auto",
                        help="log format on stderr (default: console on a terminal, else JSON)")
    sub = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Servers log every request; other commands only warnings unless asked (-v).
    chatty = args.verbose or getattr(args, "server", False)
    level = logging.DEBUG if args.verbose > 1 else logging.INFO if chatty else logging.WARNING
    fmt = {"auto": None, "console": False, "json": True}[args.log_format]
    log.configure(level=level, json=fmt)
    try:
        result = args.func(args)
    except SamenloopError as exc:
        _report(args, f"{PROG}: error: {exc}")
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one top-level handler
        _report(args, f"{PROG}: unexpected {type(exc).__name__}; run with -v for details")
        return 70
    return int(result or 0)


def _report(args: argparse.Namespace, line: str) -> None:
    if args.verbose:
        traceback.print_exc()
    print(line, file=sys.stderr)


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int, label: str, stream: IO[str] | None = None) -> None:
        self.total = max(total, 0)
        self.done = 0
        self.label = label
        self._stream = sys.stderr if stream is None else stream
        self._enabled = bool(getattr(self._stream, "isatty", lambda: False)())
        self._started = time.monotonic()
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        width = 30
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(width * frac) + "-" * (width - int(width * frac))
        rate = self.done / max(now - self._started, 1e-9)
        self._stream.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total} ({rate:,.0f}/s)"
        )
        self._stream.flush()

    def close(self) -> None:
        if self._enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
