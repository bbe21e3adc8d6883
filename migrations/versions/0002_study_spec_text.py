"""Keep a study's spec text as written.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``study.spec_text``."""
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spec_text", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop ``study.spec_text``."""
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.drop_column("spec_text")
