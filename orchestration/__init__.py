"""Dagster orchestration: WHEN and IN WHAT ORDER. Built from the revision graph and the data-migration registry.

One folder per area (``schema``, ``data``, ``checks``, ``automation``), each exposing a small ``defs``, merged in
``definitions.py``. Thin by rule: assets call the core (``tradedb.ops.pipeline``, ``data_migrations.engine``) and
hold no SQL.
"""
