"""Branches and rollouts (session kind and its parent point), and held-out item splits.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 15:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the session's kind and parent point, and the item split table."""
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="conversation", nullable=False))
        batch_op.add_column(sa.Column("point_turn_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reply_turn_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_session_point_turn_id"), ["point_turn_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_session_reply_turn_id"), ["reply_turn_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_session_point_turn_id_turn"), "turn", ["point_turn_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_session_reply_turn_id_turn"), "turn", ["reply_turn_id"], ["id"], ondelete="CASCADE"
        )
    op.create_table(
        "item_split",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_slug", sa.String(length=64), nullable=False),
        sa.Column("item_key", sa.String(length=200), nullable=False),
        sa.Column("split", sa.String(length=16), nullable=False),
        sa.Column("family", sa.String(length=32), nullable=False),
        sa.Column("heldout", sa.Float(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_split")),
        sa.UniqueConstraint("study_slug", "item_key", name="uq_item_split_study_item"),
    )
    with op.batch_alter_table("item_split", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_split_study_slug"), ["study_slug"], unique=False)


def downgrade() -> None:
    """Drop the item split table and the session's branch columns."""
    with op.batch_alter_table("item_split", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_split_study_slug"))
    op.drop_table("item_split")
    with op.batch_alter_table("session", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_session_reply_turn_id_turn"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_session_point_turn_id_turn"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_session_reply_turn_id"))
        batch_op.drop_index(batch_op.f("ix_session_point_turn_id"))
        batch_op.drop_column("reply_turn_id")
        batch_op.drop_column("point_turn_id")
        batch_op.drop_column("kind")
