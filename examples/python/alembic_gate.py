#!/usr/bin/env python3
"""Gate an Alembic migration in-process: exit 0 safe, 4 migration failed, 5 regressions.

    python3 alembic_gate.py --store scry.db --target "dbname=shop" [--revision head] [--html report.html]

The same as `scry ci test-migration TARGET -- alembic upgrade head`, from
Python: the migration runs in this process on scry's clone of the target.
"""
import argparse
import os
import sys

import scry
import scry.alembic

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=os.environ.get("SCRY_STORE", "scry.db"))
    ap.add_argument("--target", default=os.environ.get("SCRY_TARGET"), required="SCRY_TARGET" not in os.environ)
    ap.add_argument("--revision", default="head")
    ap.add_argument("--config", default=os.path.join(HERE, "alembic.ini"))
    ap.add_argument("--markdown", help="also write the Markdown report here (for a PR comment)")
    args = ap.parse_args()

    try:
        with scry.Store(args.store) as store:
            result = store.test_migration(args.target, scry.alembic.upgrade(args.revision, args.config))
    except scry.MigrationFailed as e:
        print(f"the migration failed: {e}", file=sys.stderr)
        return 4
    except scry.ScryError as e:
        print(f"scry: {e}", file=sys.stderr)
        return 1
    print(result.render("text"))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(result.render("markdown"))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
