"""Human preference judgements between two replies at the same point.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the preference judgement table."""
    op.create_table(
        "preference_judgement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_slug", sa.String(length=64), nullable=False),
        sa.Column("point_turn_id", sa.Integer(), nullable=False),
        sa.Column("reply_a_turn_id", sa.Integer(), nullable=False),
        sa.Column("reply_b_turn_id", sa.Integer(), nullable=False),
        sa.Column("left", sa.String(length=1), nullable=False),
        sa.Column("choice", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("annotator", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_preference_judgement_account_id_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["point_turn_id"], ["turn.id"], name=op.f("fk_preference_judgement_point_turn_id_turn"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reply_a_turn_id"], ["turn.id"], name=op.f("fk_preference_judgement_reply_a_turn_id_turn"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["reply_b_turn_id"], ["turn.id"], name=op.f("fk_preference_judgement_reply_b_turn_id_turn"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["preference_judgement.id"],
            name=op.f("fk_preference_judgement_supersedes_id_preference_judgement"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_preference_judgement")),
    )
    with op.batch_alter_table("preference_judgement", schema=None) as batch_op:
        batch_op.create_index(
            "ix_preference_judgement_comparison", ["point_turn_id", "reply_a_turn_id", "reply_b_turn_id"], unique=False
        )
        batch_op.create_index("ix_preference_judgement_study_account", ["study_slug", "account_id"], unique=False)


def downgrade() -> None:
    """Drop the preference judgement table."""
    with op.batch_alter_table("preference_judgement", schema=None) as batch_op:
        batch_op.drop_index("ix_preference_judgement_study_account")
        batch_op.drop_index("ix_preference_judgement_comparison")
    op.drop_table("preference_judgement")
