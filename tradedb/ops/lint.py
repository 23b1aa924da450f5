"""Migration lint: each revision's own SQL through squawk, and the strategy's documentation standards.

Why each revision is rendered alone (``schema.render_sql``: offline, ``prev:rev``): squawk then sees exactly the
statements that revision adds, so a finding points at the revision that introduced it, and a table created
earlier in the history is not mistaken for one created in the same file (squawk treats those as new and safe).

Why squawk runs WITHOUT ``--assume-in-transaction``: the rendered SQL already carries Alembic's own ``BEGIN`` /
``COMMIT`` per revision (``transaction_per_migration``), including the ``COMMIT`` before an ``autocommit_block``.
Squawk therefore sees the real transaction boundaries: 0017's ``CREATE INDEX CONCURRENTLY`` is outside any
transaction and passes, while a revision that forgot the autocommit block is reported
(``ban-concurrent-index-creation-in-transaction``). With the flag, every ``BEGIN`` would read as nesting.

A finding fails unless the revision file acknowledges its rule with a reason::

    lint_acknowledged: dict[str, str] = {"require-concurrent-index-creation": "instruments holds ~2,000 rows"}

An acknowledgement covers every occurrence of that rule in the revision. One without a reason fails; one for a
rule that no longer fires is reported as stale (a warning, so fixing the SQL never breaks CI). Documentation
findings (``doc-*``) cannot be acknowledged: the fix is always to write the documentation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from tradedb import schema
from tradedb.core.errors import TradeDBError
from tradedb.schema import RevisionInfo

SQUAWK_PACKAGE = "squawk-cli"
SQUAWK_ENV = "TRADEDB_SQUAWK"
"""Optional explicit path to the squawk binary (e.g. one installed with npm); otherwise the venv's, then PATH."""
PG_VERSION = "16"
"""Rules depend on the server version (e.g. ``ADD COLUMN ... DEFAULT`` is catalog-only from 11): the embedded one."""
SQUAWK_TIMEOUT_S = 60

FAILING, ACKNOWLEDGED, STALE = "failing", "acknowledged", "stale"

DOC_DESCRIPTION, DOC_TICKET, DOC_DATA_IMPACT, DOC_ROLLBACK = (
    "doc-description",
    "doc-ticket",
    "doc-data-impact",
    "doc-rollback-notes",
)
ACK_RULE = "lint-acknowledged"
"""Problems with the ``lint_acknowledged`` declaration itself (no reason, a documentation rule, wrong type)."""
RENDER_RULE = "sql-render"
"""The revision could not be rendered offline, so squawk could not see it."""
UNACKNOWLEDGEABLE = frozenset({DOC_DESCRIPTION, DOC_TICKET, DOC_DATA_IMPACT, DOC_ROLLBACK, ACK_RULE})

TICKET = re.compile(r"\b([A-Z][A-Z0-9]*)-(\d+)\b")
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b")
ALEMBIC_DEFAULT_MESSAGE = "empty message"
MIN_DESCRIPTION_WORDS = 4
"""Fewer words than this cannot say what changes and why ("Fix", "Update trades")."""
MIN_REASON_WORDS = 3
"""An acknowledgement's reason must be a sentence, not "ok" or "safe"."""
EXCERPT_CHARS = 160

BOOKKEEPING = re.compile(
    r"^(?:CREATE TABLE|INSERT INTO|UPDATE|DELETE FROM) alembic_version\b.*?;[ \t]*$", re.MULTILINE | re.DOTALL
)
"""Alembic's own version-table statements: rendered with the revision, but not the revision's SQL."""


@dataclass(frozen=True)
class Finding:
    """One thing lint reports about a revision."""

    rule: str
    message: str
    status: str = FAILING
    line: int | None = None
    """1-based line in the revision's rendered SQL (``tradedb lint`` / the asset's ``sql`` metadata)."""
    sql: str = ""
    help: str = ""
    level: str = "error"
    reason: str = ""
    """The acknowledgement's reason (acknowledged and stale findings)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RevisionLint:
    """Lint result of one revision: every finding with its status, and stale acknowledgements."""

    revision: str
    feature: str
    path: str
    findings: tuple[Finding, ...]
    stale: tuple[Finding, ...] = ()

    @property
    def failing(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == FAILING)

    @property
    def acknowledged(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == ACKNOWLEDGED)

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def summary(self) -> str:
        """``clean``, or counts such as ``1 failing, 2 acknowledged, 1 stale``."""
        parts = [
            f"{len(group)} {name}"
            for name, group in (
                (FAILING, self.failing),
                (ACKNOWLEDGED, self.acknowledged),
                (STALE, self.stale),
            )
            if group
        ]
        return ", ".join(parts) or "clean"

    def rows(self) -> list[dict[str, Any]]:
        """Findings grouped by rule and status (one line per rule, with every line it fired on), stale last."""
        grouped: dict[tuple[str, str], dict[str, Any]] = {}
        for f in (*self.findings, *self.stale):
            row = grouped.setdefault(
                (f.rule, f.status),
                {"rule": f.rule, "status": f.status, "lines": [], "message": f.message, "reason": f.reason},
            )
            if f.line is not None:
                row["lines"].append(f.line)
            if f.message not in row["message"].split(
                " / "
            ):  # one rule, several messages (prefer-robust-stmts)
                row["message"] += f" / {f.message}"
        order = {FAILING: 0, ACKNOWLEDGED: 1, STALE: 2}
        return sorted(grouped.values(), key=lambda r: (order[r["status"]], r["rule"]))

    def markdown(self) -> str:
        """A findings table for the Dagster asset's metadata."""
        if not self.findings and not self.stale:
            return "No findings: squawk and the documentation standards pass."
        lines = ["| rule | status | SQL lines | message | reason |", "| --- | --- | --- | --- | --- |"]
        for r in self.rows():
            cells = (
                r["rule"],
                r["status"],
                ", ".join(map(str, r["lines"])) or "-",
                r["message"],
                r["reason"],
            )
            lines.append(
                "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "feature": self.feature,
            "path": self.path,
            "ok": self.ok,
            "summary": self.summary,
            "findings": [f.to_json() for f in self.findings],
            "stale": [f.to_json() for f in self.stale],
        }


# ------------------------------------------------------------------------------------------------ squawk


def squawk_binary() -> str:
    """Path of the squawk executable: ``$TRADEDB_SQUAWK``, else beside this Python (the venv), else on PATH."""
    explicit = os.environ.get(SQUAWK_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise TradeDBError(f"{SQUAWK_ENV}={explicit} is not an executable squawk binary")
        return explicit
    beside = Path(sys.executable).parent / "squawk"
    if os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("squawk")
    if found:
        return found
    raise TradeDBError(
        f"squawk (the SQL migration linter) is not installed: pip install {SQUAWK_PACKAGE} "
        "(it is in the [dev] extra: pip install -e '.[dev]')"
    )


def run_squawk(sql_by_name: Mapping[str, str]) -> dict[str, list[Finding]]:
    """Lint several SQL texts in ONE squawk process (about 10 ms for the whole history); findings by name.

    Each text goes to its own file, so squawk judges each revision on its own statements.
    """
    if not sql_by_name:
        return {}
    binary = squawk_binary()
    names = list(sql_by_name)
    with tempfile.TemporaryDirectory(prefix="tradedb-lint-") as tmp:
        files = [f"{i:04d}.sql" for i in range(len(names))]
        for file, name in zip(files, names, strict=True):
            (Path(tmp) / file).write_text(sql_by_name[name])
        try:
            proc = subprocess.run(
                [binary, "--reporter", "json", "--pg-version", PG_VERSION, *files],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=SQUAWK_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TradeDBError(f"squawk could not run ({binary}): {exc}") from None
    report = _parse_report(proc)
    by_file = dict(zip(files, names, strict=True))
    out: dict[str, list[Finding]] = {name: [] for name in names}
    for item in report:
        name = by_file.get(item.get("file", ""))
        if name is None:
            raise TradeDBError(f"squawk reported on an unknown file: {item.get('file')!r}")
        out[name].append(_finding(item, sql_by_name[name]))
    for name in names:
        skip = _bookkeeping_lines(sql_by_name[name])
        out[name] = [f for f in out[name] if f.line is None or f.line - 1 not in skip]
    return out


def _parse_report(proc: subprocess.CompletedProcess) -> list[dict[str, Any]]:
    """Squawk exits 1 when it finds something, so the exit status alone says nothing; the JSON says it all."""
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, list):
        detail = (
            proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"
        ).splitlines()[0]
        raise TradeDBError(f"squawk gave no JSON report: {detail}")
    return report


def _finding(item: Mapping[str, Any], sql: str) -> Finding:
    line = item.get("line")
    text_lines = sql.splitlines()
    excerpt = ""
    if isinstance(line, int) and 0 <= line < len(text_lines):  # squawk counts lines from 0
        excerpt = text_lines[line].strip()[:EXCERPT_CHARS]
    return Finding(
        rule=str(item.get("rule_name") or "squawk"),
        message=str(item.get("message") or ""),
        line=line + 1 if isinstance(line, int) else None,
        sql=excerpt,
        help=str(item.get("help") or ""),
        level=str(item.get("level") or "warning").lower(),
    )


def _bookkeeping_lines(sql: str) -> set[int]:
    """0-based lines of Alembic's version-table statements (e.g. 0001's ``CREATE TABLE alembic_version``)."""
    lines: set[int] = set()
    for match in BOOKKEEPING.finditer(sql):
        first = sql.count("\n", 0, match.start())
        lines.update(range(first, sql.count("\n", 0, match.end()) + 1))
    return lines


# ------------------------------------------------------------------------------------------------ documentation


def check_documentation(info: RevisionInfo) -> list[Finding]:
    """The strategy's documentation standards: a clear description, a ticket, data impact and rollback notes."""
    checks = (
        (DOC_DESCRIPTION, description_problem(info.message)),
        (DOC_TICKET, _ticket_problem(info.ticket)),
        (
            DOC_DATA_IMPACT,
            _prose_problem("data_impact", info.data_impact, "which tables and rows change, how"),
        ),
        (
            DOC_ROLLBACK,
            _prose_problem("rollback_notes", info.rollback_notes, "what downgrade does and loses"),
        ),
    )
    return [Finding(rule, problem) for rule, problem in checks if problem]


def description_problem(message: object) -> str | None:
    """What is wrong with a docstring's first line as a description (None when it says what changes)."""
    lines = str(message or "").strip().splitlines()
    first = lines[0].strip() if lines else ""
    if not first:
        return "no description: the docstring's first line should say what changes and why"
    if first.lower() == ALEMBIC_DEFAULT_MESSAGE:
        return "the description is Alembic's default 'empty message': say what changes and why (alembic -m)"
    if PLACEHOLDER.search(first):
        return f"the description {first!r} is a placeholder"
    if len(first.split()) < MIN_DESCRIPTION_WORDS:
        return f"the description {first!r} is too short to say what changes (at least {MIN_DESCRIPTION_WORDS} words)"
    return None


def _ticket_problem(ticket: object) -> str | None:
    text = str(ticket or "").strip()
    if not text:
        return 'no ticket: set ticket = "TRD-123" in the revision file'
    if not TICKET.findall(text):
        return f"ticket {text!r} is not a reference like TRD-123"
    if not real_tickets(text):
        return f"ticket {text!r} is the template's placeholder: name the real ticket"
    return None


def real_tickets(text: str) -> list[str]:
    """Ticket references in ``text`` that are not placeholders (``TODO-000``, ``XYZ-0``)."""
    return [
        f"{prefix}-{number}"
        for prefix, number in TICKET.findall(text)
        if not (PLACEHOLDER.fullmatch(prefix) or int(number) == 0)
    ]


def _prose_problem(field: str, value: object, what: str) -> str | None:
    text = str(value or "").strip()
    if not text:
        return f"no {field}: say {what}"
    if PLACEHOLDER.search(text):
        return f"{field} is still a placeholder ({text[:60]!r}): say {what}"
    return None


# ------------------------------------------------------------------------------------------------ judging


def acknowledgements(raw: object) -> tuple[dict[str, str], list[Finding]]:
    """Valid acknowledgements (rule -> reason), and a failing finding for each malformed one."""
    if raw is None or raw == {}:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [
            Finding(ACK_RULE, 'lint_acknowledged must be a dict: {"rule-name": "why it is safe here"}')
        ]
    valid: dict[str, str] = {}
    problems: list[Finding] = []
    for rule, reason in raw.items():
        if rule in UNACKNOWLEDGEABLE:
            problems.append(
                Finding(
                    ACK_RULE,
                    f"{rule} cannot be acknowledged: write the documentation instead",
                    reason=str(reason),
                )
            )
        elif not isinstance(reason, str) or len(reason.split()) < MIN_REASON_WORDS:
            problems.append(
                Finding(
                    ACK_RULE,
                    f"the acknowledgement of {rule} gives no reason: say why it is safe in this revision",
                    reason=str(reason or ""),
                )
            )
        else:
            valid[str(rule)] = " ".join(reason.split())
    return valid, problems


def assess(info: RevisionInfo, sql_findings: Iterable[Finding]) -> RevisionLint:
    """Combine squawk's findings for ``info`` with its acknowledgements and its documentation."""
    acks, problems = acknowledgements(info.lint_acknowledged)
    sql_findings = list(sql_findings)
    judged = [
        replace(f, status=ACKNOWLEDGED, reason=acks[f.rule]) if f.rule in acks else f for f in sql_findings
    ]
    fired = {f.rule for f in sql_findings}
    stale = tuple(
        Finding(
            rule,
            "acknowledged, but no longer reported: remove it from lint_acknowledged",
            status=STALE,
            level="warning",
            reason=reason,
        )
        for rule, reason in acks.items()
        if rule not in fired
    )
    return RevisionLint(
        revision=info.revision,
        feature=info.feature,
        path=info.path,
        findings=(*judged, *check_documentation(info), *problems),
        stale=stale,
    )


def lint_revisions(infos: Sequence[RevisionInfo]) -> list[RevisionLint]:
    """Lint these revisions (one squawk process for all of them)."""
    squawk_binary()  # a missing linter is one clear error before any rendering
    sql: dict[str, str] = {}
    unrendered: dict[str, Finding] = {}
    for info in infos:
        try:
            sql[info.revision] = schema.render_sql(info.revision)
        except Exception as exc:  # any failure: one revision that cannot render must not hide the others
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            unrendered[info.revision] = Finding(RENDER_RULE, f"could not render the SQL offline: {first}")
    found = run_squawk(sql)
    return [
        assess(info, [unrendered[info.revision]] if info.revision in unrendered else found[info.revision])
        for info in infos
    ]


def lint_revision(info: RevisionInfo) -> RevisionLint:
    return lint_revisions([info])[0]


@cache
def _history() -> tuple[RevisionLint, ...]:
    """The whole history, linted once per process (Dagster's definitions ask once per asset per environment)."""
    return tuple(lint_revisions(schema.revisions()))


def lint_all(revisions: Iterable[str] | None = None) -> list[RevisionLint]:
    """Every revision, oldest first; or only ``revisions`` (ids, prefixes or ``head``, resolved like Alembic)."""
    if revisions is None:
        return list(_history())
    wanted = {schema.resolve_revision(r) for r in revisions}
    return lint_revisions([info for info in schema.revisions() if info.revision in wanted])


def lint_by_revision() -> dict[str, RevisionLint]:
    return {r.revision: r for r in _history()}
