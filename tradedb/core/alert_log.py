"""The alert log file: JSON lines, rotated by size, read back across its rotations, shared by several processes.

The CLI, the Dagster daemon, its code server and every run worker append to the same log. The standard library's
``logging.handlers.RotatingFileHandler`` is not safe for that (the logging cookbook says logging to one file from
several processes is not supported): each process keeps its stream open and decides on its own to roll over, so
one renames the file while another keeps appending to the renamed copy, or two roll over at once and a file is
lost. This module keeps that handler's naming and rule (``alerts.log``, then ``alerts.log.1`` newest to
``alerts.log.N`` oldest; roll over before a write that would pass ``max_bytes``; keep ``backups`` old files) and
does both under an advisory lock on ``<log>.lock`` that every writer takes, opening the file afresh for each
line. Readers (the dedup lookback, ``tradedb alerts``) go from the newest file back through the old ones, so a
rotation never hides a recent alert.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 10 * 1024 * 1024  # about 20,000 alerts per file
DEFAULT_BACKUPS = 5  # rotated files kept besides the current one


@dataclass(frozen=True)
class Rotation:
    """When the log rolls over and how many old files it keeps (``[alerts] max_bytes`` and ``backups``)."""

    max_bytes: int = DEFAULT_MAX_BYTES  # 0: never roll over
    backups: int = DEFAULT_BACKUPS


class AlertLog:
    """One alert log: ``path`` plus its rotated files ``path.1`` .. ``path.<backups>``."""

    def __init__(self, path: Path, rotation: Rotation | None = None) -> None:
        self.path = path
        self.rotation = rotation or Rotation()

    def files(self) -> list[Path]:
        """The log's files that exist, newest first."""
        names = [self.path] + [self._rotated(n) for n in range(1, self.rotation.backups + 1)]
        return [p for p in names if p.is_file()]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the log's advisory lock (a no-op where ``fcntl`` is missing or the lock file cannot be made).

        Not re-entrant: a second ``locked()`` in the same process, or ``write`` inside one, would wait forever.
        """
        handle = None
        try:
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.with_name(self.path.name + ".lock").open("a")
            fcntl.flock(handle, fcntl.LOCK_EX)
        except (ImportError, OSError):
            if handle is not None:
                handle.close()
            handle = None
        try:
            yield
        finally:
            if handle is not None:
                handle.close()  # closing releases the flock

    def write(self, record: dict[str, Any]) -> None:
        """Append one record, rolling the log over first when it would pass ``max_bytes``."""
        with self.locked():
            self.append_held(record)

    def append_held(self, record: dict[str, Any]) -> None:
        """``write`` for a caller already holding ``locked()``."""
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._roll_over_before(len(line))
        with self.path.open("ab") as handle:
            handle.write(line)

    def tail(self, max_bytes: int) -> list[dict[str, Any]]:
        """The records in the last ``max_bytes`` of the log, across rotated files, oldest first."""
        chunks: list[list[dict[str, Any]]] = []
        budget = max_bytes
        for path in self.files():
            if budget <= 0:
                break
            lines, read = _tail_lines(path, budget)
            chunks.append(_parsed(lines))
            budget -= read
        return [r for chunk in reversed(chunks) for r in chunk]

    def recent(self, limit: int, environment: str | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` records (oldest first), optionally of one environment, reading old files only as needed."""
        if limit <= 0:
            return []
        found: list[dict[str, Any]] = []
        for path in self.files():
            try:
                with path.open(encoding="utf-8", errors="replace") as handle:
                    records = _parsed(handle)
            except OSError:
                continue
            if environment is not None:
                records = [r for r in records if r.get("environment") == environment]
            found = records + found
            if len(found) >= limit:
                break
        return found[-limit:]

    def _rotated(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def _roll_over_before(self, incoming: int) -> None:
        """Shift ``path`` to ``path.1`` (and ``.1`` to ``.2`` ...) when ``incoming`` bytes would pass the limit."""
        limit, backups = self.rotation.max_bytes, self.rotation.backups
        if limit <= 0 or backups <= 0:
            return
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= limit:
            return
        for number in range(backups - 1, 0, -1):
            older = self._rotated(number)
            if older.exists():
                os.replace(older, self._rotated(number + 1))
        os.replace(self.path, self._rotated(1))


def _tail_lines(path: Path, max_bytes: int) -> tuple[list[str], int]:
    """The whole lines in the last ``max_bytes`` of ``path`` and how many bytes were read."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            chunk = handle.read()
    except OSError:  # gone (rotated away meanwhile) or unreadable: no dedup from it, the alert still goes out
        return [], 0
    lines = chunk.decode("utf-8", "replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first line was cut by the seek
    return lines, len(chunk)


def _parsed(lines) -> list[dict[str, Any]]:
    return [r for r in (parse(line) for line in lines) if r is not None]


def parse(line: str) -> dict[str, Any] | None:
    """One log line as a record; None for a line cut by a crash or edited by hand (skipped, the rest is kept)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
