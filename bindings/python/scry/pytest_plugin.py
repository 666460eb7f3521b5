"""pytest plugin (entry point `pytest11`): gate migrations from a test suite.

Options: --scry-store PATH (default $SCRY_STORE, then ./scry.db) and
--scry-target CONNINFO (default $SCRY_TARGET): the captured workload and the
database the migration is tested against.

    def test_migration_is_safe(scry_gate):
        result = scry_gate(scry.alembic.upgrade("head"))
        scry.assert_no_regressions(result)

`scry_gate(migrate, fix=None, **options)` runs Store.test_migration with the
options of Store.test_migration and returns the MigrationResult. A test that
uses it without a target configured fails with what to set (it does not
skip: a gate that silently did nothing would pass CI).
"""

import os

import pytest

import scry


def pytest_addoption(parser):
    group = parser.getgroup("scry", "scry: gate migrations on the captured workload")
    group.addoption("--scry-store", default=None, metavar="PATH",
                    help="workload store (default $SCRY_STORE, then ./scry.db)")
    group.addoption("--scry-target", default=None, metavar="CONNINFO",
                    help="database the migration is tested against (default $SCRY_TARGET)")


def pytest_configure(config):
    config.addinivalue_line("markers", "scry: a test that gates a migration with scry")


class Gate:
    """The `scry_gate` fixture: call it with a migration."""

    def __init__(self, store_path, target):
        self.store_path = store_path
        self.target = target
        self.results = []

    def __call__(self, migrate, fix=None, **options):
        if not self.target:
            pytest.fail("scry_gate: no target database; pass --scry-target CONNINFO or set $SCRY_TARGET",
                        pytrace=False)
        with scry.Store(self.store_path) as store:
            result = store.test_migration(self.target, migrate, fix, **options)
        self.results.append(result)
        return result

    def __repr__(self):
        return f"<scry_gate store={self.store_path!r} target={self.target!r}>"


@pytest.fixture
def scry_gate(request):
    """Runs a migration through scry's gate; returns the MigrationResult."""
    cfg = request.config
    store = cfg.getoption("scry_store") or os.environ.get("SCRY_STORE") or "scry.db"
    target = cfg.getoption("scry_target") or os.environ.get("SCRY_TARGET")
    return Gate(store, target)
