"""events: the append-only event log. ``payload`` is typed JSONB; release 1 stored it as text (``payload_raw``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tradedb.core.models.base import Base, BigPK


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_type_occurred_at", "event_type", "occurred_at"),)

    id: Mapped[BigPK]
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_type: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64))
    instrument_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("instruments.id"), index=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """NULL only for legacy events whose text payload could not be parsed (original text kept in quarantine)."""
