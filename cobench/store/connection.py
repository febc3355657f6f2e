"""One SQLite connection (WAL) per store, migrated on open; every write is one transaction."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cobench.errors import InputError, StoreError
from cobench.store.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_S = 30.0  # how long a write waits for another process's lock before giving up


class Connection:
    """The connection the repositories share; `transaction()` is the only way they write.

    Opened with a check: a corrupt file (`PRAGMA quick_check`) or someone else's SQLite database is
    refused before anything is written to it. `read_only` opens without writing anything (commands
    that only read work on a read-only file or filesystem)."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        if path.parent and not path.parent.exists():
            raise InputError("store", f"directory {path.parent} does not exist")
        if read_only and not path.is_file():
            raise InputError("store", f"{path} does not exist (nothing stored yet)")
        folder = path.parent if str(path.parent) else Path(".")
        if not read_only and not (os.access(folder, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))):
            raise StoreError(
                f"store {path} is read-only (no write permission, or a read-only filesystem): this command writes"
                " to it; the commands that only read it (store info/check/export, report) work"
            )
        try:
            if read_only:
                # a WAL database needs its -shm file; where nobody can write (a read-only file, folder or
                # filesystem) nobody can change it either, so it is opened as immutable
                frozen = not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
                uri = f"{path.resolve().as_uri()}?mode=ro{'&immutable=1' if frozen else ''}"
                self.db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            else:
                self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._check()
            if not read_only:
                self._use_wal()
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {path}: not a usable cobench store ({' '.join(str(e).split())})") from None

    def _check(self) -> None:
        """Refuse a damaged file and a foreign one: cobench never appends to either."""
        found = self.db.execute("PRAGMA quick_check").fetchone()[0]
        if found != "ok":
            raise StoreError(
                f"store {self.path} is damaged (quick_check: {found}); nothing was written to it: "
                "restore a copy or start a new store"
            )
        tables = [r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if self.version == 0 and tables:
            raise StoreError(
                f"{self.path} is an SQLite database but not a cobench store (tables: {', '.join(tables[:5])}); "
                "cobench leaves it as it is: pass another --store"
            )

    def _use_wal(self) -> None:
        """Switch to WAL, waiting for other openers as `timeout` would.

        While another connection holds the write lock (another process creating the same new store: two
        `profile` runs sharing one), SQLite refuses the switch at once, without its busy handler: "database
        is locked". This retries it for as long as any other write would wait."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema v{current}, newer than this cobench (v{SCHEMA_VERSION}): upgrade cobench"
            )
        if current < SCHEMA_VERSION and self.read_only:
            if current == 0:
                raise StoreError(f"store {self.path} is empty: nothing to read")
            raise StoreError(f"store {self.path} has schema v{current}: open it once writable to migrate it")
        for number in range(current, SCHEMA_VERSION):
            with self.transaction():
                if self.version > number:  # another process migrated it while this one waited for the lock
                    continue
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; anything raised (Ctrl-C included) rolls the whole write back."""
        if self.read_only:
            raise StoreError(f"store {self.path} was opened read-only")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as e:  # disk full, read-only file, locked past the timeout
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise StoreError(f"store {self.path}: {e}; nothing of this write was stored") from None

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The query's rows as dicts keyed by column name."""
        cursor = self.db.execute(sql, args)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor]

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        row = self.db.execute(sql, args).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()


def where(conditions: dict[str, Any]) -> tuple[str, list[Any]]:
    """` WHERE a = ? AND b = ?` for the conditions that are not None, and their arguments."""
    used = {k: v for k, v in conditions.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), list(used.values())
