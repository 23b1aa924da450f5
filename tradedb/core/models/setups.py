"""setups: named trade setups and their per-ticker instances with typed entry/stop/target levels."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from tradedb.core.models.base import Base, BigPK, CreatedAt, Price

TICKER_SETUP_STATUSES = ("watching", "active", "triggered", "invalidated")


class Setup(Base):
    __tablename__ = "setups"

    id: Mapped[BigPK]
    name: Mapped[str] = mapped_column(String(80), unique=True)
    timeframe: Mapped[str] = mapped_column(String(8))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class TickerSetup(Base):
    __tablename__ = "ticker_setups"
    __table_args__ = (CheckConstraint(f"status IN {TICKER_SETUP_STATUSES}", name="status"),)

    id: Mapped[BigPK]
    setup_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("setups.id"), index=True)
    instrument_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("instruments.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    entry_price: Mapped[Price | None]
    stop_price: Mapped[Price | None]
    target_price: Mapped[Price | None]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
