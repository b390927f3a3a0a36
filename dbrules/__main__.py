"""``python -m dbrules <command>``: the demo and the benchmark.

Both run on the embedded PostgreSQL server unless DATABASE_URL is set. The
benchmark lives in the source checkout (``bench/``), not in the wheel.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "demo": ("dbrules.demo", "a small bookstore kept exact through ORM and raw SQL writes"),
    "bench": ("bench.run", "dbrules against no rules, row triggers, signals and computedfields"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m dbrules {demo,bench} [options]\n")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:6} {text}")
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    import importlib

    try:
        module = importlib.import_module(COMMANDS[argv[0]][0])
    except ImportError as error:
        if argv[0] != "bench":
            raise
        print(
            f"the benchmark needs a source checkout and its extras ({error}): run it from the "
            "repository root after `python -m pip install -e \".[bench]\"`.",
            file=sys.stderr,
        )
        return 2
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
