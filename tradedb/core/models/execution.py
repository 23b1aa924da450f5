"""execution: orders, their fills (trades) with a stored notional, and net positions per account."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tradedb.core.models.base import Base, BigPK, Money, Price, Quantity

ORDER_STATUSES = ("new", "partially_filled", "filled", "cancelled", "rejected")


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("side IN ('buy', 'sell')", name="side"),
        CheckConstraint("order_type IN ('market', 'limit', 'stop', 'stop_limit')", name="order_type"),
        CheckConstraint(f"status IN {ORDER_STATUSES}", name="status"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_orders_account_submitted_at", "account_id", "submitted_at"),
    )

    id: Mapped[BigPK]
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    instrument_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("instruments.id"), index=True)
    signal_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("signals.id"), index=True)
    client_order_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Quantity]
    limit_price: Mapped[Price | None]
    status: Mapped[str] = mapped_column(String(20))
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Trade(Base):
    """One fill of an order. ``notional`` = price x quantity, stored for reporting since release 1.3."""

    __tablename__ = "trades"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("price > 0", name="price_positive"),
        Index("ix_trades_account_executed_at", "account_id", "executed_at"),
    )

    id: Mapped[BigPK]
    order_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("orders.id"), index=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    instrument_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("instruments.id"))
    executed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    quantity: Mapped[Quantity]
    price: Mapped[Price]
    fee: Mapped[Money] = mapped_column(server_default=text("0"))
    notional: Mapped[Money]


class Position(Base):
    __tablename__ = "positions"
    __table_args__ = (UniqueConstraint("account_id", "instrument_id"),)

    id: Mapped[BigPK]
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    instrument_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("instruments.id"))
    quantity: Mapped[Quantity]
    avg_price: Mapped[Price]
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
