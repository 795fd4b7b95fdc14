"""Pseudonymisation cost per record, next to its floor, in one run.

The floor is the libsodium work a record's pseudonym cannot avoid on the agent's side:
for each key, hash-to-group (expand_message_xmd + from_hash), one scalar multiplication to
blind, one inversion and one multiplication to unblind. The full cost adds the key
service's evaluation and proof, the agent's proof check and the final hash — measured
here in-process (no network), so the ratio is the protocol's overhead, not gRPC's.

    python bench/pseudonymise.py [--records 2000] [--keys-per-record 2]
"""

from __future__ import annotations

import argparse
import time

from exchange import _group, _oprf, crypto


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--keys-per-record", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    key = crypto.OprfKey.generate()
    suite = _oprf.Suite(_oprf.Mode.VOPRF)
    items = [(crypto.KeyKind.PERSON if i % 2 else crypto.KeyKind.ADDRESS,
              f"{i:09d}".encode()) for i in range(args.records * args.keys_per_record)]
    dst = b"HashToGroup-" + suite.context

    start = time.perf_counter()
    for _, value in items:
        element = _group.hash_to_group(value, dst)
        r = _group.scalar_random()
        blinded = _group.scalar_mult(r, element)
        _group.scalar_mult(_group.scalar_invert(r), blinded)
    floor = time.perf_counter() - start

    start = time.perf_counter()
    crypto.pseudonymise(items, public_key=key.public_key, evaluate=key.evaluate,
                        batch_size=args.batch)
    full = time.perf_counter() - start

    start = time.perf_counter()
    for i in range(0, len(items), args.batch):
        blinded = [suite.blind(v)[1] for _, v in items[i:i + args.batch]]
        key.evaluate(blinded)
    server = time.perf_counter() - start

    n = args.records
    print(f"records: {n}, keys per record: {args.keys_per_record}, batch: {args.batch}")
    print(f"agent floor (group ops):      {floor / n * 1e6:8.1f} us/record")
    print(f"pseudonymise, end to end:     {full / n * 1e6:8.1f} us/record "
          f"({n / full:,.0f} records/s)")
    print(f"  of which key service:       ~{server / n * 1e6:7.1f} us/record "
          "(blinding + evaluation + proof, measured apart)")
    print(f"ratio end-to-end / floor:     {full / floor:8.2f}")


if __name__ == "__main__":
    main()
