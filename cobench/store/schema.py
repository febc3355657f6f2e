"""The store's schema: numbered migrations, applied in order and recorded in `PRAGMA user_version`, so an
old store upgrades in place and a store from a newer cobench is refused rather than damaged."""

from __future__ import annotations

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
    # 7: the rounds of a profile (measure/rounds.py), each stored as it finishes, so a run killed between
    # rounds resumes with the ones it has; the profile row itself is written once its rounds are combined
    """
    CREATE TABLE profile_rounds (
        profile_key TEXT NOT NULL, round INTEGER NOT NULL, result_json TEXT NOT NULL, created_at REAL NOT NULL,
        PRIMARY KEY (profile_key, round));
    """,
    # 8: who runs a sweep (host:pid), so that one whose process died is marked interrupted on the next
    # open instead of staying `running` for ever
    """
    ALTER TABLE sweeps ADD COLUMN owner TEXT;
    """,
    # 9: the layer kinds and variants of a candidate (arch/architecture.py VARIANT_COLUMNS) where it has any, as
    # JSON, so that hybrid and windowed candidates come back as what they were; NULL: a plain model (older rows)
    """
    ALTER TABLE sweep_candidates ADD COLUMN variants_json TEXT;
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
STORED_COLUMNS = (*CANDIDATE_COLUMNS, "variants_json")  # what a sweep_candidates row holds beside its sweep id
