"""A regression: drops the index the hot query by category uses.

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("idx_items_category", table_name="items")


def downgrade():
    op.create_index("idx_items_category", "items", ["category"])
