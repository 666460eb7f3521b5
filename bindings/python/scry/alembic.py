"""Alembic on the clone: `scry.alembic.upgrade(revision)` is a `migrate` callable.

    import scry, scry.alembic
    with scry.Store("scry.db") as store:
        result = store.test_migration("dbname=shop", migrate=scry.alembic.upgrade("head"))

The callable builds an SQLAlchemy URL from the clone's connection string and
runs `alembic upgrade` with it: the Alembic config's `sqlalchemy.url` is set
to that URL, DATABASE_URL too (for an env.py that reads it), and the
connection is also offered as `config.attributes["connection"]` for an
env.py that uses a connection it is given (Alembic's cookbook recipe).
Needs Alembic and SQLAlchemy (Debian: python3-alembic, python3-sqlalchemy).
"""

import os

from . import conninfo as _conninfo

__all__ = ["upgrade", "downgrade", "sqlalchemy_url"]


def sqlalchemy_url(conninfo, driver="psycopg2"):
    """The SQLAlchemy URL of a libpq connection string (postgresql+psycopg2://...)."""
    return _conninfo.to_url(conninfo, "postgresql+" + driver if driver else "postgresql")


def _run(command, revision, config, driver, sql, connection_attribute):
    def migrate(conninfo):
        from alembic import command as alembic_command
        from alembic.config import Config
        import sqlalchemy

        url = sqlalchemy_url(conninfo, driver)
        cfg = Config(config) if isinstance(config, (str, os.PathLike)) else config
        if isinstance(config, (str, os.PathLike)) and not os.path.exists(config):
            raise FileNotFoundError(f"scry.alembic: no Alembic config at {os.path.abspath(config)}")
        # ConfigParser interpolation: a literal % in the URL (an escaped password) must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        old = os.environ.get("DATABASE_URL")
        os.environ["DATABASE_URL"] = url
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.begin() as conn:
                if connection_attribute:
                    cfg.attributes["connection"] = conn
                getattr(alembic_command, command)(cfg, revision, sql=sql)
        finally:
            cfg.attributes.pop("connection", None)
            engine.dispose()
            if old is None:
                os.environ.pop("DATABASE_URL", None)
            else:
                os.environ["DATABASE_URL"] = old
    migrate.__name__ = f"alembic_{command}_{revision}"
    return migrate


def upgrade(revision="head", config="alembic.ini", driver="psycopg2", connection_attribute=True):
    """A `migrate` callable running `alembic upgrade <revision>` on the clone.

    `config` is the path of alembic.ini (or an alembic.config.Config).
    `driver` is the SQLAlchemy PostgreSQL driver ("psycopg2", "psycopg", "pg8000").
    """
    return _run("upgrade", revision, config, driver, False, connection_attribute)


def downgrade(revision, config="alembic.ini", driver="psycopg2", connection_attribute=True):
    """A `migrate` callable running `alembic downgrade <revision>` on the clone."""
    return _run("downgrade", revision, config, driver, False, connection_attribute)
