"""frame token generation

``frames.token_generation``: device tokens carry the generation they were issued in, and
revoking a frame's tokens moves the frame to the next one (tokens without the claim are
generation 0, as every frame starts).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "frames",
        sa.Column("token_generation", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("frames", "token_generation")
