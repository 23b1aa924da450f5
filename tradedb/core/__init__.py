"""The core: what the trading database is and how to reach it, the ground every other layer stands on.

Holds settings and environments (``settings``, ``paths``, ``urls``), the embedded PostgreSQL (``embedded``),
engines and connections (``db``), the one user-facing error type (``errors``), who launched a run
(``launchers``), password scrubbing (``scrub``), the alert sink every layer reports to (``alerts``), the six
feature names (``features``), the app's SQLAlchemy models by feature (``models``) and its managed views, functions
and triggers (``objects``).

May import: only the standard library and third-party packages; nothing of ``tradedb``'s other layers,
``data_migrations`` or ``orchestration``.
"""
