"""Failed staff sign-ins, counted in the database so every app replica sees them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 17:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the failed sign-in table."""
    op.create_table(
        "sign_in_failure",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failure")),
    )
    with op.batch_alter_table("sign_in_failure", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_failure_key", ["kind", "key", "failed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sign_in_failure_failed_at"), ["failed_at"], unique=False)


def downgrade() -> None:
    """Drop the failed sign-in table."""
    with op.batch_alter_table("sign_in_failure", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sign_in_failure_failed_at"))
        batch_op.drop_index("ix_sign_in_failure_key")
    op.drop_table("sign_in_failure")
