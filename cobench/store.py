"""The SQLite store: one file (WAL) for everything measured, predicted or fitted.

Schema changes are numbered migrations applied in order and recorded in `PRAGMA user_version`, so an
old store upgrades in place and a store from a newer cobench is refused rather than damaged. Each
write is one transaction: an interrupted sweep keeps the chunks it finished and resumes after them.
Later issues add tables (measurements, calibrations, training runs) as further migrations.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cobench.errors import InputError, StoreError

DEFAULT_PATH = "cobench.db"
MIGRATIONS: list[str] = [
    # 1: architectures, devices, single predictions, sweeps and their candidates
    """
    CREATE TABLE architectures (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, spec_json TEXT NOT NULL,
        params_total INTEGER NOT NULL, params_active INTEGER NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE devices (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, power_mode TEXT, spec_json TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE predictions (
        id INTEGER PRIMARY KEY, arch_id TEXT NOT NULL REFERENCES architectures(id),
        device_id TEXT NOT NULL REFERENCES devices(id), workload_json TEXT NOT NULL, params_json TEXT NOT NULL,
        ttft_s REAL NOT NULL, tpot_s REAL NOT NULL, e2e_s REAL NOT NULL, peak_memory_bytes REAL NOT NULL,
        fits INTEGER NOT NULL, result_json TEXT NOT NULL, created_at REAL NOT NULL,
        UNIQUE (arch_id, device_id, workload_json, params_json));
    CREATE TABLE sweeps (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, space_json TEXT NOT NULL,
        device_id TEXT NOT NULL REFERENCES devices(id), workload_json TEXT NOT NULL, params_json TEXT NOT NULL,
        grid_size INTEGER NOT NULL, n_chunks INTEGER NOT NULL, status TEXT NOT NULL,
        created_at REAL NOT NULL, finished_at REAL);
    CREATE TABLE sweep_chunks (
        sweep_id TEXT NOT NULL REFERENCES sweeps(id), chunk INTEGER NOT NULL, n_valid INTEGER NOT NULL,
        n_kept INTEGER NOT NULL, seconds REAL NOT NULL, PRIMARY KEY (sweep_id, chunk));
    CREATE TABLE sweep_candidates (
        sweep_id TEXT NOT NULL REFERENCES sweeps(id), grid_index INTEGER NOT NULL,
        d_model INTEGER, n_layers INTEGER, n_heads INTEGER, n_kv_heads INTEGER, head_dim INTEGER, d_ff INTEGER,
        vocab_size INTEGER, n_experts INTEGER, top_k INTEGER, d_ff_expert INTEGER, n_shared_experts INTEGER,
        gated INTEGER, layernorm INTEGER, qkv_bias INTEGER, o_bias INTEGER, mlp_bias INTEGER,
        tie_embeddings INTEGER, d_ff_shared INTEGER, shared_expert_gate INTEGER,
        params_total INTEGER, params_active INTEGER, kv_bytes_per_token REAL,
        ttft_s REAL, tpot_s REAL, e2e_s REAL, peak_memory_bytes REAL, fits INTEGER,
        prefill_compute_bound INTEGER, decode_compute_bound INTEGER,
        PRIMARY KEY (sweep_id, grid_index));
    CREATE INDEX sweep_candidates_e2e ON sweep_candidates (sweep_id, e2e_s);
    """,
    # 2: on-device measurements (`cobench profile`): one row per candidate run, raw samples, telemetry
    """
    CREATE TABLE profiles (
        key TEXT PRIMARY KEY, arch_id TEXT NOT NULL REFERENCES architectures(id), arch_name TEXT NOT NULL,
        device_id TEXT NOT NULL REFERENCES devices(id), backend TEXT NOT NULL, precision TEXT NOT NULL,
        workload_json TEXT NOT NULL, status TEXT NOT NULL, reason TEXT,
        ttft_s REAL, tpot_s REAL, e2e_s REAL, energy_per_token_j REAL,
        predicted_json TEXT NOT NULL, summary_json TEXT, environment_json TEXT,
        created_at REAL NOT NULL, seconds REAL NOT NULL);
    CREATE TABLE timing_samples (
        profile_key TEXT NOT NULL REFERENCES profiles(key), phase TEXT NOT NULL, samples_json TEXT NOT NULL,
        statistics_json TEXT NOT NULL, PRIMARY KEY (profile_key, phase));
    CREATE TABLE telemetry (
        profile_key TEXT NOT NULL REFERENCES profiles(key), phase TEXT NOT NULL, series_json TEXT NOT NULL,
        PRIMARY KEY (profile_key, phase));
    """,
    # 3: kernel microbenchmarks (`cobench kernels run`)
    """
    CREATE TABLE kernel_results (
        key TEXT PRIMARY KEY, device_id TEXT NOT NULL REFERENCES devices(id), backend TEXT NOT NULL,
        runner_device TEXT NOT NULL, suite TEXT NOT NULL, kind TEXT NOT NULL, shape_json TEXT NOT NULL,
        precision TEXT NOT NULL, cold INTEGER NOT NULL, flops REAL NOT NULL, bytes REAL NOT NULL,
        median_s REAL NOT NULL, summary_json TEXT NOT NULL, environment_json TEXT NOT NULL, created_at REAL NOT NULL);
    """,
    # 4: fitted latency models (`cobench calibrate`), numbered per device, power mode, backend and precision
    """
    CREATE TABLE calibrations (
        device TEXT NOT NULL, power_mode TEXT NOT NULL, backend TEXT NOT NULL, precision TEXT NOT NULL,
        version INTEGER NOT NULL, body_json TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (device, power_mode, backend, precision, version));
    """,
    # 5: short training runs (`cobench train`) and loss-law fits (`cobench fit`)
    """
    CREATE TABLE training_runs (
        key TEXT PRIMARY KEY, arch_id TEXT NOT NULL REFERENCES architectures(id), arch_name TEXT NOT NULL,
        corpus TEXT NOT NULL, config_json TEXT NOT NULL, status TEXT NOT NULL, steps INTEGER NOT NULL,
        tokens INTEGER NOT NULL, final_loss REAL, final_bpb REAL, n_params INTEGER NOT NULL,
        n_params_total INTEGER NOT NULL, tokens_per_s REAL, curve_json TEXT NOT NULL, environment_json TEXT,
        created_at REAL NOT NULL);
    CREATE TABLE law_fits (
        id INTEGER PRIMARY KEY, law TEXT NOT NULL, source TEXT NOT NULL, body_json TEXT NOT NULL,
        created_at REAL NOT NULL);
    """,
    # 6: analyses over a search space (`cobench pareto`), kept so that the report can redraw them
    """
    CREATE TABLE analyses (
        id INTEGER PRIMARY KEY, kind TEXT NOT NULL, device TEXT NOT NULL, body_json TEXT NOT NULL,
        created_at REAL NOT NULL);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
CANDIDATE_COLUMNS = (
    "grid_index",
    "d_model",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "d_ff",
    "vocab_size",
    "n_experts",
    "top_k",
    "d_ff_expert",
    "n_shared_experts",
    "gated",
    "layernorm",
    "qkv_bias",
    "o_bias",
    "mlp_bias",
    "tie_embeddings",
    "d_ff_shared",
    "shared_expert_gate",
    "params_total",
    "params_active",
    "kv_bytes_per_token",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "peak_memory_bytes",
    "fits",
    "prefill_compute_bound",
    "decode_compute_bound",
)


def default_path() -> Path:
    """--store flag > COBENCH_STORE > ./cobench.db."""
    return Path(os.environ.get("COBENCH_STORE", DEFAULT_PATH))


def content_id(obj: Any) -> str:
    """Stable id of a JSON-able object: the same architecture or device always maps to one row."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise InputError("store", f"directory {self.path.parent} does not exist")
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"store {self.path}: not a usable cobench store ({e})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        current = self.version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema v{current}, newer than this cobench (v{SCHEMA_VERSION}): upgrade cobench"
            )
        for number in range(current, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; anything raised (Ctrl-C included) rolls the whole write back."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- architectures and devices ------------------------------------------------------------

    def put_architecture(self, spec: dict[str, Any], params_total: int, params_active: int) -> str:
        arch_id = content_id({k: v for k, v in spec.items() if k != "name"})
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO architectures VALUES (?, ?, ?, ?, ?, ?)",
                (
                    arch_id,
                    spec.get("name", ""),
                    json.dumps(spec, sort_keys=True),
                    params_total,
                    params_active,
                    time.time(),
                ),
            )
        return arch_id

    def put_device(self, name: str, power_mode: str | None, spec: dict[str, Any]) -> str:
        device_id = content_id(spec)
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO devices VALUES (?, ?, ?, ?, ?)",
                (device_id, name, power_mode, json.dumps(spec, sort_keys=True, default=str), time.time()),
            )
        return device_id

    # --- single predictions ---------------------------------------------------------------------

    def put_prediction(
        self,
        arch_id: str,
        device_id: str,
        workload: dict[str, Any],
        params: dict[str, Any],
        result: dict[str, Any],
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO predictions (arch_id, device_id, workload_json, params_json, ttft_s, tpot_s,"
                " e2e_s, peak_memory_bytes, fits, result_json, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    arch_id,
                    device_id,
                    json.dumps(workload, sort_keys=True),
                    json.dumps(params, sort_keys=True),
                    result["ttft_s"],
                    result["tpot_s"],
                    result["e2e_s"],
                    result["peak_memory_bytes"],
                    int(result["fits"]),
                    json.dumps(result, sort_keys=True),
                    time.time(),
                ),
            )

    # --- sweeps -----------------------------------------------------------------------------------

    def begin_sweep(
        self,
        sweep_id: str,
        name: str,
        space: dict[str, Any],
        device_id: str,
        workload: dict[str, Any],
        params: dict[str, Any],
        grid_size: int,
        n_chunks: int,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, NULL)",
                (
                    sweep_id,
                    name,
                    json.dumps(space, sort_keys=True, default=str),
                    device_id,
                    json.dumps(workload, sort_keys=True),
                    json.dumps(params, sort_keys=True),
                    grid_size,
                    n_chunks,
                    time.time(),
                ),
            )

    def done_chunks(self, sweep_id: str) -> set[int]:
        rows = self.db.execute("SELECT chunk FROM sweep_chunks WHERE sweep_id = ?", (sweep_id,))
        return {r[0] for r in rows}

    def put_chunk(self, sweep_id: str, chunk: int, n_valid: int, seconds: float, rows: Sequence[Sequence[Any]]) -> None:
        """Candidates and the chunk's completion marker commit together, or not at all."""
        placeholders = ",".join("?" * (len(CANDIDATE_COLUMNS) + 1))
        columns = ", ".join(CANDIDATE_COLUMNS)
        with self.transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO sweep_candidates (sweep_id, {columns}) VALUES ({placeholders})",
                ((sweep_id, *row) for row in rows),
            )
            db.execute(
                "INSERT OR REPLACE INTO sweep_chunks VALUES (?, ?, ?, ?, ?)",
                (sweep_id, chunk, n_valid, len(rows), seconds),
            )

    def finish_sweep(self, sweep_id: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sweeps SET status = 'done', finished_at = ? WHERE id = ? AND status != 'done'",
                (time.time(), sweep_id),
            )

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT * FROM sweeps WHERE id = ? OR name = ? ORDER BY created_at DESC LIMIT 1",
            (sweep_id, sweep_id),
        ).fetchone()
        if row is None:
            raise InputError("sweep", f"no sweep {sweep_id!r} in {self.path} (see `cobench store info`)")
        cols = [c[0] for c in self.db.execute("SELECT * FROM sweeps LIMIT 0").description]
        return dict(zip(cols, row, strict=True))

    def sweep_stats(self, sweep_id: str) -> dict[str, int]:
        n_valid, n_kept, n_done = self.db.execute(
            "SELECT COALESCE(SUM(n_valid), 0), COALESCE(SUM(n_kept), 0), COUNT(*) FROM sweep_chunks WHERE sweep_id = ?",
            (sweep_id,),
        ).fetchone()
        return {"valid": int(n_valid), "kept": int(n_kept), "chunks_done": int(n_done)}

    def candidates(self, sweep_id: str, order_by: str = "e2e_s", limit: int | None = None) -> list[dict[str, Any]]:
        column = order_by.lstrip("-")
        if column not in CANDIDATE_COLUMNS:
            raise InputError("sort", f"unknown column {column!r} (one of {', '.join(CANDIDATE_COLUMNS)})")
        direction = "DESC" if order_by.startswith("-") else "ASC"
        sql = (
            f"SELECT {', '.join(CANDIDATE_COLUMNS)} FROM sweep_candidates WHERE sweep_id = ? "
            f"ORDER BY {column} {direction}, grid_index"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [dict(zip(CANDIDATE_COLUMNS, r, strict=True)) for r in self.db.execute(sql, (sweep_id,))]

    # --- profiles ---------------------------------------------------------------------------------

    def profile_status(self, key: str) -> str | None:
        row = self.db.execute("SELECT status FROM profiles WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_profile(self, row: dict[str, Any], phases: dict[str, Any] | None) -> None:
        """A profile with its raw samples and telemetry, in one transaction (replacing an earlier failure)."""
        with self.transaction() as db:
            for table in ("timing_samples", "telemetry"):
                db.execute(f"DELETE FROM {table} WHERE profile_key = ?", (row["key"],))
            db.execute(
                "INSERT OR REPLACE INTO profiles (key, arch_id, arch_name, device_id, backend, precision,"
                " workload_json, status, reason, ttft_s, tpot_s, e2e_s, energy_per_token_j, predicted_json,"
                " summary_json, environment_json, created_at, seconds) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row["key"],
                    row["arch_id"],
                    row["arch_name"],
                    row["device_id"],
                    row["backend"],
                    row["precision"],
                    json.dumps(row["workload"], sort_keys=True),
                    row["status"],
                    row.get("reason"),
                    row.get("ttft_s"),
                    row.get("tpot_s"),
                    row.get("e2e_s"),
                    row.get("energy_per_token_j"),
                    json.dumps(row["predicted"]),
                    json.dumps(row.get("summary")),
                    json.dumps(row.get("environment")),
                    time.time(),
                    row["seconds"],
                ),
            )
            for phase, data in (phases or {}).items():
                stats = {k: v for k, v in data.items() if k not in ("samples_s", "telemetry")}
                db.execute(
                    "INSERT INTO timing_samples VALUES (?, ?, ?, ?)",
                    (row["key"], phase, json.dumps(data["samples_s"]), json.dumps(stats)),
                )
                if data.get("telemetry"):
                    db.execute(
                        "INSERT INTO telemetry VALUES (?, ?, ?)", (row["key"], phase, json.dumps(data["telemetry"]))
                    )

    def profiles(self, keys: list[str] | None = None) -> list[dict[str, Any]]:
        cols = [
            "key",
            "arch_name",
            "backend",
            "precision",
            "workload_json",
            "status",
            "reason",
            "ttft_s",
            "tpot_s",
            "e2e_s",
            "energy_per_token_j",
            "predicted_json",
            "summary_json",
            "environment_json",
            "seconds",
        ]
        joined = [
            "(SELECT spec_json FROM architectures a WHERE a.id = p.arch_id) AS arch_json",
            "(SELECT name FROM devices d WHERE d.id = p.device_id) AS device",
            "(SELECT power_mode FROM devices d WHERE d.id = p.device_id) AS power_mode",
        ]
        sql = f"SELECT {', '.join(['p.' + c for c in cols] + joined)} FROM profiles p ORDER BY p.created_at"
        cols += ["arch_json", "device", "power_mode"]
        rows = [dict(zip(cols, r, strict=True)) for r in self.db.execute(sql)]
        for r in rows:
            for k in ("workload_json", "predicted_json", "summary_json", "environment_json", "arch_json"):
                r[k.removesuffix("_json")] = json.loads(r.pop(k)) if r[k] else None
        return [r for r in rows if keys is None or r["key"] in keys]

    def samples(self, key: str) -> dict[str, list[float]]:
        rows = self.db.execute("SELECT phase, samples_json FROM timing_samples WHERE profile_key = ?", (key,))
        return {phase: json.loads(s) for phase, s in rows}

    # --- kernel microbenchmarks ------------------------------------------------------------------

    def put_kernel(self, row: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO kernel_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row["key"],
                    row["device_id"],
                    row["backend"],
                    row["runner_device"],
                    row["suite"],
                    row["kind"],
                    json.dumps(row["shape"], sort_keys=True),
                    row["precision"],
                    int(row["cold"]),
                    row["flops"],
                    row["bytes"],
                    row["median_s"],
                    json.dumps(row["summary"]),
                    json.dumps(row["environment"]),
                    time.time(),
                ),
            )

    def has_kernel(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM kernel_results WHERE key = ?", (key,)).fetchone() is not None

    def kernels(self, device_name: str) -> list[dict[str, Any]]:
        cols = [
            "key",
            "backend",
            "runner_device",
            "suite",
            "kind",
            "shape_json",
            "precision",
            "cold",
            "flops",
            "bytes",
            "median_s",
            "summary_json",
        ]
        sql = (
            f"SELECT {', '.join('k.' + c for c in cols)} FROM kernel_results k JOIN devices d ON d.id = k.device_id"
            " WHERE d.name = ? ORDER BY k.suite, k.kind, k.created_at"
        )
        rows = [dict(zip(cols, r, strict=True)) for r in self.db.execute(sql, (device_name,))]
        for r in rows:
            r["shape"], r["summary"] = json.loads(r.pop("shape_json")), json.loads(r.pop("summary_json"))
        return rows

    # --- calibrations --------------------------------------------------------------------------------

    def put_calibration(self, body: dict[str, Any]) -> int:
        """Store a calibration as the next version for its device, mode, backend and precision."""
        key = (body["device"], body.get("power_mode") or "", body["backend"], body["precision"])
        with self.transaction() as db:
            (latest,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM calibrations WHERE device = ? AND power_mode = ?"
                " AND backend = ? AND precision = ?",
                key,
            ).fetchone()
            version = int(latest) + 1
            db.execute(
                "INSERT INTO calibrations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, version, json.dumps(body | {"version": version}, sort_keys=True), time.time()),
            )
        return version

    def calibration(
        self, device: str, power_mode: str | None, precision: str, backend: str | None = None
    ) -> dict[str, Any] | None:
        """The newest calibration for this device/mode/precision (of `backend`, or of any backend)."""
        sql = "SELECT body_json FROM calibrations WHERE device = ? AND power_mode = ? AND precision = ?"
        args: list[Any] = [device, power_mode or "", precision]
        if backend:
            sql += " AND backend = ?"
            args.append(backend)
        row = self.db.execute(sql + " ORDER BY created_at DESC, version DESC LIMIT 1", args).fetchone()
        return json.loads(row[0]) if row else None

    def calibrations(self) -> list[dict[str, Any]]:
        return [
            json.loads(r[0])
            for r in self.db.execute("SELECT body_json FROM calibrations ORDER BY device, backend, precision, version")
        ]

    # --- training runs and loss-law fits ---------------------------------------------------------------

    def training_status(self, key: str) -> str | None:
        row = self.db.execute("SELECT status FROM training_runs WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put_training_run(self, row: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO training_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row["key"],
                    row["arch_id"],
                    row["arch_name"],
                    row["corpus"],
                    json.dumps(row["config"], sort_keys=True),
                    row["status"],
                    row["steps"],
                    row["tokens"],
                    row.get("final_loss"),
                    row.get("final_bpb"),
                    row["n_params"],
                    row["n_params_total"],
                    row.get("tokens_per_s"),
                    json.dumps(row["curve"]),
                    json.dumps(row.get("environment")),
                    time.time(),
                ),
            )

    def training_runs(self, status: str | None = "done") -> list[dict[str, Any]]:
        cols = [
            "key",
            "arch_name",
            "corpus",
            "config_json",
            "status",
            "steps",
            "tokens",
            "final_loss",
            "final_bpb",
            "n_params",
            "n_params_total",
            "tokens_per_s",
            "curve_json",
        ]
        sql = (
            f"SELECT {', '.join('t.' + c for c in cols)}, a.spec_json FROM training_runs t"
            " JOIN architectures a ON a.id = t.arch_id"
        )
        args: tuple[Any, ...] = ()
        if status:
            sql += " WHERE t.status = ?"
            args = (status,)
        rows = []
        for r in self.db.execute(sql + " ORDER BY t.created_at", args):
            row = dict(zip([*cols, "arch_json"], r, strict=True))
            for k in ("config_json", "curve_json", "arch_json"):
                row[k.removesuffix("_json")] = json.loads(row.pop(k))
            rows.append(row)
        return rows

    def put_law_fit(self, law: str, source: str, body: dict[str, Any]) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO law_fits (law, source, body_json, created_at) VALUES (?, ?, ?, ?)",
                (law, source, json.dumps(body, sort_keys=True), time.time()),
            )
        return int(cursor.lastrowid or 0)

    def law_fit(self, which: str | None = None) -> dict[str, Any] | None:
        """A fit by id, or the newest of a law (by name), or the newest of any law."""
        sql, args = "SELECT id, body_json FROM law_fits", ()
        if which and which.isdigit():
            sql, args = sql + " WHERE id = ?", (int(which),)
        elif which:
            sql, args = sql + " WHERE law = ?", (which,)
        row = self.db.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return json.loads(row[1]) | {"id": row[0]} if row else None

    def put_analysis(self, kind: str, device: str, body: dict[str, Any]) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO analyses (kind, device, body_json, created_at) VALUES (?, ?, ?, ?)",
                (kind, device, json.dumps(body, default=float), time.time()),
            )
        return int(cursor.lastrowid or 0)

    def analyses(self, kind: str) -> list[dict[str, Any]]:
        """The newest analysis of this kind per device."""
        rows = self.db.execute(
            "SELECT body_json FROM analyses WHERE id IN (SELECT MAX(id) FROM analyses WHERE kind = ? GROUP BY device)"
            " ORDER BY device",
            (kind,),
        )
        return [json.loads(r[0]) for r in rows]

    def summary(self) -> dict[str, Any]:
        tables = [r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        counts = {t: self.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
        sweeps = [
            dict(zip(("id", "name", "status", "grid_size", "created_at"), r, strict=True))
            for r in self.db.execute("SELECT id, name, status, grid_size, created_at FROM sweeps ORDER BY created_at")
        ]
        return {"path": str(self.path), "schema_version": self.version, "rows": counts, "sweeps": sweeps}


def export_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as CSV or JSON by the file's suffix, atomically (a crash never leaves half a file)."""
    if path.suffix not in (".csv", ".json"):
        raise InputError("out", f"{path} must end in .csv or .json")
    if not path.parent.exists():
        raise InputError("out", f"directory {path.parent} does not exist")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        if path.suffix == ".json":
            json.dump(rows, f, indent=1)
        else:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(CANDIDATE_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    tmp.replace(path)
