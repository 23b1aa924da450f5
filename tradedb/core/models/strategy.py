"""strategy: signals produced by setups, and the market bias per instrument and timeframe."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tradedb.core.models.base import Base, BigPK


class Signal(Base):
    __tablename__ = "signals"
    __table_args__ = (
        CheckConstraint("direction IN ('long', 'short')", name="direction"),
        CheckConstraint("strength BETWEEN 0 AND 1", name="strength_unit"),
        Index("ix_signals_instrument_generated_at", "instrument_id", "generated_at"),
    )

    id: Mapped[BigPK]
    ticker_setup_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("ticker_setups.id"), index=True
    )
    instrument_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("instruments.id"))
    generated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    direction: Mapped[str] = mapped_column(String(8))
    strength: Mapped[Decimal] = mapped_column(Numeric(5, 4))


class Bias(Base):
    __tablename__ = "bias"
    __table_args__ = (
        CheckConstraint("bias IN ('bullish', 'bearish', 'neutral')", name="bias"),
        UniqueConstraint("instrument_id", "timeframe", "as_of"),
    )

    id: Mapped[BigPK]
    instrument_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("instruments.id"))
    timeframe: Mapped[str] = mapped_column(String(8))
    bias: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[Decimal | None] = mapped_column(Numeric(5, 4))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))
