"""Annotation workbench: assignments, queue slots, gold checks, repair sequence spans and edits.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the annotation tables and the repair sequence columns."""
    op.create_table(
        "annotation_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_slug", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("per_conversation", sa.Integer(), nullable=False),
        sa.Column("sees_prelabels", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_annotation_assignment_account_id_account"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_assignment")),
        sa.UniqueConstraint("study_slug", "account_id", name="uq_annotation_assignment_study_account"),
    )
    with op.batch_alter_table("annotation_assignment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotation_assignment_study_slug"), ["study_slug"], unique=False)
        batch_op.create_index(batch_op.f("ix_annotation_assignment_account_id"), ["account_id"], unique=False)

    op.create_table(
        "annotation_slot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_slug", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("touched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_annotation_slot_account_id_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["session.id"], name=op.f("fk_annotation_slot_session_id_session"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_slot")),
        sa.UniqueConstraint("session_id", "slot", name="uq_annotation_slot_session_slot"),
        sa.UniqueConstraint("session_id", "account_id", name="uq_annotation_slot_session_account"),
    )
    with op.batch_alter_table("annotation_slot", schema=None) as batch_op:
        batch_op.create_index("ix_annotation_slot_queue", ["study_slug", "account_id", "status"], unique=False)

    op.create_table(
        "annotation_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("layer", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["account.id"], name=op.f("fk_annotation_check_account_id_account"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(["turn_id"], ["turn.id"], name=op.f("fk_annotation_check_turn_id_turn"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_check")),
        sa.UniqueConstraint("turn_id", "layer", name="uq_annotation_check_turn_layer"),
    )

    with op.batch_alter_table("repair_sequence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("span_start", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("span_end", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_repair_sequence_account_id_account"), "account", ["account_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    """Remove them."""
    with op.batch_alter_table("repair_sequence", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_repair_sequence_account_id_account"), type_="foreignkey")
        batch_op.drop_column("updated_at")
        batch_op.drop_column("meta")
        batch_op.drop_column("span_end")
        batch_op.drop_column("span_start")
        batch_op.drop_column("account_id")
    op.drop_table("annotation_check")
    with op.batch_alter_table("annotation_slot", schema=None) as batch_op:
        batch_op.drop_index("ix_annotation_slot_queue")
    op.drop_table("annotation_slot")
    with op.batch_alter_table("annotation_assignment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotation_assignment_account_id"))
        batch_op.drop_index(batch_op.f("ix_annotation_assignment_study_slug"))
    op.drop_table("annotation_assignment")
