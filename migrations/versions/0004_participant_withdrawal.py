"""Participant withdrawal records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 14:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the withdrawal record table."""
    op.create_table(
        "participant_withdrawal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_participant_withdrawal_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_participant_withdrawal")),
    )
    with op.batch_alter_table("participant_withdrawal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_participant_withdrawal_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    """Drop the withdrawal record table."""
    with op.batch_alter_table("participant_withdrawal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_participant_withdrawal_study_id"))
    op.drop_table("participant_withdrawal")
