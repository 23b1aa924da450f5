"""discord: guilds and channels the bot posts to, alert subscriptions and their types, and the message log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tradedb.core.models.base import Base, BigPK, CreatedAt

ALERT_TYPES = ("entry", "stop", "target", "signal", "bias", "fill")


class DiscordGuild(Base):
    __tablename__ = "discord_guilds"

    id: Mapped[BigPK]
    guild_snowflake: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[CreatedAt]


class DiscordChannel(Base):
    __tablename__ = "discord_channels"
    __table_args__ = (CheckConstraint("kind IN ('text', 'announcement', 'thread')", name="kind"),)

    id: Mapped[BigPK]
    guild_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("discord_guilds.id"), index=True)
    channel_snowflake: Mapped[int] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))


class AlertSubscription(Base):
    __tablename__ = "alert_subscriptions"

    id: Mapped[BigPK]
    channel_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("discord_channels.id"), index=True)
    instrument_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("instruments.id"), index=True)
    setup_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("setups.id"))
    created_at: Mapped[CreatedAt]


class AlertSubscriptionType(Base):
    """One alert type a subscription receives; release 1 kept these as comma-separated text."""

    __tablename__ = "alert_subscription_types"
    __table_args__ = (CheckConstraint(f"alert_type IN {ALERT_TYPES}", name="alert_type"),)

    subscription_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("alert_subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    alert_type: Mapped[str] = mapped_column(String(16), primary_key=True)


class DiscordMessage(Base):
    __tablename__ = "discord_messages"
    __table_args__ = (CheckConstraint("status IN ('sent', 'failed', 'deleted')", name="status"),)

    id: Mapped[BigPK]
    channel_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("discord_channels.id"))
    event_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("events.id"), index=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8))
