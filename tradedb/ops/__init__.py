"""Operations: production safety and monitoring, built on the schema layer and the data engine.

Holds maintenance windows (``windows``), backups and restores (``backup``), the staging rehearsal
(``rehearsal``), the deployment plan (``plan``), migration lint (``lint``; data migrations' in ``data_lint``),
round-trip validation (``validate``), drift watch (``drift_watch``), ledger reports (``report``), where an
environment stands (``status``), the deploy pipeline's two steps (``pipeline``), sample data (``sample_data``),
table checksums (``checksums``) and the scaffolds for the next revision or data migration (``scaffold``).

May import: ``data_migrations``, ``tradedb.schema`` and ``tradedb.core``; never ``orchestration`` or the CLI.
"""
