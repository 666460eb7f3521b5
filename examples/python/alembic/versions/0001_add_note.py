"""A safe migration: a nullable column.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("items", sa.Column("note", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("items", "note")
