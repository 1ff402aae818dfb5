"""The `marllbd` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


class UsageError(Exception):
    """Bad command-line input: reported on one line, exit code 2."""


def _cmd_bench(args: argparse.Namespace) -> int:
    from marllbd.benchmarks import registry

    benches = registry()
    names = sorted(benches)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in benches]
        if unknown:
            raise UsageError(
                f"--only: unknown benchmark {', '.join(unknown)}; known: {', '.join(names)}"
            )
        names = wanted
    for name in names:
        for res in benches[name](args.quick):
            if args.json:
                print(json.dumps(res.to_json_dict()), flush=True)
            else:
                print(
                    f"{res.name:24s} {res.value:12.4g} {res.unit:12s} "
                    f"baseline {res.baseline} = {res.baseline_value:.4g}  ratio {res.ratio:.3g}",
                    flush=True,
                )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marllbd", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run benchmarks, each beside its same-run baseline")
    bench.add_argument("--quick", action="store_true", help="short runs (seconds, not minutes)")
    bench.add_argument("--json", action="store_true", help="one JSON object per line")
    bench.add_argument("--only", metavar="NAME[,NAME]", help="run only these benchmarks")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"marllbd {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
