"""Checks area: integrity checks as asset checks."""
