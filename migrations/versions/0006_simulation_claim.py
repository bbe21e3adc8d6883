"""Simulation claims: units of a run shared by worker processes on any number of hosts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 17:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the simulation claim table."""
    op.create_table(
        "simulation_claim",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=1000), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_simulation_claim_participant_id_participant"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_simulation_claim_study_id_study"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_simulation_claim")),
        sa.UniqueConstraint("run_id", "unit", name="uq_simulation_claim_run_unit"),
    )
    with op.batch_alter_table("simulation_claim", schema=None) as batch_op:
        batch_op.create_index("ix_simulation_claim_queue", ["run_id", "state", "position"], unique=False)
        batch_op.create_index(batch_op.f("ix_simulation_claim_study_id"), ["study_id"], unique=False)


def downgrade() -> None:
    """Drop the simulation claim table."""
    with op.batch_alter_table("simulation_claim", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_simulation_claim_study_id"))
        batch_op.drop_index("ix_simulation_claim_queue")
    op.drop_table("simulation_claim")
