"""Tests of operations: windows, backups, rehearsal, lint, validate, reports."""
