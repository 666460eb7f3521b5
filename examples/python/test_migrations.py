"""pytest example: the Alembic migrations must not slow down the captured workload.

    pytest examples/python/test_migrations.py --scry-store scry.db --scry-target "dbname=shop"

The scry plugin (installed with the `scry` package) provides the `scry_gate`
fixture and the --scry-store / --scry-target options. ALEMBIC_REVISION picks
the revision to gate (default: head).
"""
import os

import scry
import scry.alembic

HERE = os.path.dirname(os.path.abspath(__file__))


def test_alembic_upgrade_is_safe(scry_gate):
    revision = os.environ.get("ALEMBIC_REVISION", "head")
    result = scry_gate(scry.alembic.upgrade(revision, config=os.path.join(HERE, "alembic.ini")))
    print(repr(result))
    scry.assert_no_regressions(result)
