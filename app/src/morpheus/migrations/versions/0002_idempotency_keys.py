"""Idempotency keys of submissions: one comic per client key.

Expand only: a new table that the previous release neither reads nor writes, so both
releases run side by side on this schema. A comic deleted by either release takes its key
with it (ON DELETE CASCADE).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# Expand: a new table only (see above).
phase: str = "expand"


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("comic_id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["comic_id"],
            ["comics.id"],
            name=op.f("fk_idempotency_keys_comic_id_comics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(op.f("ix_idempotency_keys_comic_id"), "idempotency_keys", ["comic_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_comic_id"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
