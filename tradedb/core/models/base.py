"""Declarative base and the naming convention that keeps constraint names stable for autogenerate and downgrades."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from sqlalchemy import BigInteger, DateTime, MetaData, Numeric, func
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    metadata = metadata


# Column shapes shared by every feature, so money and time are typed the same way everywhere.
BigPK = Annotated[int, mapped_column(BigInteger, primary_key=True, autoincrement=True)]
Price = Annotated[Decimal, mapped_column(Numeric(20, 8))]
Quantity = Annotated[Decimal, mapped_column(Numeric(20, 8))]
Money = Annotated[Decimal, mapped_column(Numeric(24, 8))]
CreatedAt = Annotated[datetime, mapped_column(DateTime(timezone=True), server_default=func.now())]
Timestamp = Annotated[datetime, mapped_column(DateTime(timezone=True))]
