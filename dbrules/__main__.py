"""``python -m dbrules <command>``: the demo.

It runs on the embedded PostgreSQL server unless DATABASE_URL is set.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "demo": ("dbrules.demo", "a small bookstore kept exact through ORM and raw SQL writes"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print("usage: python -m dbrules demo [options]\n")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:6} {text}")
        return 0 if not argv or argv[0] in {"-h", "--help"} else 2
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
