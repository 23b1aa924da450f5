"""common: trading accounts and the instruments (tickers) every other feature refers to."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Boolean, CheckConstraint, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from tradedb.core.models.base import Base, BigPK, CreatedAt

ASSET_CLASSES = ("equity", "future", "option", "crypto", "fx")


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("base_currency ~ '^[A-Z]{3}$'", name="base_currency_iso"),)

    id: Mapped[BigPK]
    name: Mapped[str] = mapped_column(String(120), unique=True)
    broker: Mapped[str] = mapped_column(String(64))
    base_currency: Mapped[str] = mapped_column(String(3), server_default=text("'USD'"))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[CreatedAt]


class Instrument(Base):
    __tablename__ = "instruments"
    __table_args__ = (
        CheckConstraint(f"asset_class IN {ASSET_CLASSES}", name="asset_class"),
        CheckConstraint("tick_size > 0", name="tick_size_positive"),
    )

    id: Mapped[BigPK]
    symbol: Mapped[str] = mapped_column(String(32), unique=True)
    exchange: Mapped[str] = mapped_column(String(16), index=True)
    asset_class: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    tick_size: Mapped[Decimal] = mapped_column(Numeric(18, 8))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[CreatedAt]
