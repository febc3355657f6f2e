"""`cobench train`: short training runs of candidates (one, or a queue), resumable, into the store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cobench.arch.architecture import Architecture
from cobench.arch.queue import read_queue
from cobench.arch.spec import load_architecture
from cobench.cli.app import app, handles_errors
from cobench.cli.options import STORE_DEFAULT, ArchOpt, DevicesPathOpt, JsonOpt, RayOpt, StoreOpt
from cobench.cli.render import emit_json, err, out, table
from cobench.errors import InputError
from cobench.fit.train import Progress as Step
from cobench.fit.train import TrainConfig
from cobench.fit.train_queue import DEFAULT_CHECKPOINTS
from cobench.fit.training_run import TrainingRun
from cobench.report.format import si
from cobench.store import Store


class Bars:
    """A progress bar per run on stderr (off with --json): steps, tokens/s, train and validation loss."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Progress | None = None

    def skipped(self, index: int, total: int, run: TrainingRun) -> None:
        if self.enabled:
            err.print(f"[{index}/{total}] {run.arch_name} {si(run.config['tokens'])} tokens: done before, skipped")

    def started(self, index: int, total: int, arch: Architecture, cfg: TrainConfig) -> Callable[[Step], None]:
        self.bar = Progress(
            TextColumn(f"[{index}/{total}] {arch.name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps {task.fields[rate]} tok/s loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=err,
            disable=not self.enabled,
        )
        self.bar.start()
        task = self.bar.add_task("train", total=cfg.steps, rate="—", loss="—")

        def show(p: Step, bar: Progress = self.bar) -> None:
            loss = f"{p.train_loss:.3f}" + (f" (val {p.val_loss:.3f})" if p.val_loss is not None else "")
            bar.update(task, completed=p.step, rate=f"{p.tokens_per_s:,.0f}", loss=loss)

        return show

    def finished(self) -> None:
        if self.bar:
            self.bar.stop()

    def ran(self, index: int, total: int, run: TrainingRun) -> None:
        if self.enabled:
            env = run.environment or {}
            err.print(f"[{index}/{total}] {run.arch_name} {si(run.tokens)} tokens: loss {run.final_loss:.4f}, "
                      f"{run.tokens_per_s or 0:,.0f} tok/s on {env.get('world', 1)} process(es) at "
                      f"{(env.get('node') or {}).get('ip', 'this machine')}")  # fmt: skip


def _mfu(env: dict) -> str:  # type: ignore[type-arg]
    if env.get("mfu") is None:
        return "—"
    return f"{'~' if env.get('peak_uncertain') else ''}{env['mfu']:.1%}"


@app.command("train")
@handles_errors
def train_cmd(
    arch: ArchOpt = None,
    tokens: Annotated[int | None, typer.Option("--tokens", "-t", metavar="N", help="Training tokens per run.")] = None,
    queue: Annotated[
        Path | None,
        typer.Option("--queue", metavar="FILE", help="YAML of jobs (arch, tokens), e.g. from `cobench select`."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", metavar="FILE", help="Training text file or nanoGPT .bin [default: Python stdlib text]."
        ),
    ] = None,
    val: Annotated[
        Path | None, typer.Option("--val", metavar="FILE", help="Validation file [default: the tail of the data].")
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option("--tokenizer", metavar="FILE", help="tokenizer.json (needs `tokenizers`) [default: bytes]."),
    ] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", metavar="TOKENS", help="Tokens per training sequence.")] = 128,
    batch: Annotated[int, typer.Option("--batch", "-b", metavar="N", help="Sequences per step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", metavar="LR", help="Peak learning rate (AdamW).")] = 3e-3,
    eval_every: Annotated[
        int, typer.Option("--eval-every", metavar="STEPS", help="Validate every this many steps.")
    ] = 25,
    ckpt_every: Annotated[
        int, typer.Option("--ckpt-every", metavar="STEPS", help="Checkpoint every this many steps.")
    ] = 25,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Weights and batch order.")] = 0,
    tokens_multiplier: Annotated[
        float,
        typer.Option(
            "--tokens-multiplier",
            metavar="X",
            help="Scale every job's budget (e.g. 0.5: a second point on the data axis).",
        ),
    ] = 1.0,
    device: Annotated[
        str, typer.Option("--device", metavar="WHERE", help="cpu or cuda (bf16 autocast on cuda).")
    ] = "cpu",
    checkpoints: Annotated[
        Path, typer.Option("--checkpoint-dir", metavar="DIR", help="Where interrupted runs keep their state.")
    ] = DEFAULT_CHECKPOINTS,
    store: StoreOpt = STORE_DEFAULT,
    json_out: JsonOpt = False,
    ray: RayOpt = None,
    gpus_per_run: Annotated[
        int,
        typer.Option(
            "--gpus-per-run",
            metavar="N",
            min=1,
            help="Processes per run as one DDP group, one GPU each (NCCL); with --device cpu one CPU each "
            "(gloo). Above 1 needs --ray; the batch is the global batch, split over them.",
        ),
    ] = 1,
    peak_device: Annotated[
        str | None,
        typer.Option(
            "--peak-device",
            metavar="NAME",
            help="Catalogue device trained on, for MFU (its matmul peak) [default: cpu with --device cpu].",
        ),
    ] = None,
    devices_path: DevicesPathOpt = None,
) -> None:
    """Train candidates for a token budget; finished runs are skipped, interrupted ones resume. With --ray,
    the runs go to the cluster's GPUs (or CPUs) at once; checkpoints must then be on storage every node sees."""
    from cobench.cluster import connect
    from cobench.fit.corpus import load_corpus
    from cobench.fit.train_queue import train_jobs
    from cobench.hardware.devices import get_device

    jobs = [(j.arch, j.tokens) for j in (read_queue(queue) if queue else [])]
    jobs += [(load_architecture(s), tokens) for s in arch or []]
    if not jobs:
        raise InputError("arch", "give --arch SPEC (repeatable) or --queue FILE")
    if any(t is None for _, t in jobs) and tokens is None:
        raise InputError("tokens", "give --tokens N (or tokens for every queue job)")
    if device not in ("cpu", "cuda"):
        raise InputError("device", f"cpu or cuda, got {device!r}")
    base = TrainConfig(
        tokens=tokens or 1,  # a job's own budget replaces it (fit/train_queue.py)
        seq_len=seq_len,
        batch=batch,
        lr=lr,
        eval_every=eval_every,
        ckpt_every=ckpt_every,
        seed=seed,
        device=device,
    )
    peak_name = peak_device or ("cpu" if device == "cpu" else None)
    peak = get_device(peak_name, None, devices_path) if peak_name else None
    corpus = load_corpus(data, val, tokenizer)
    cluster = connect(ray) if ray else None
    with Store(store) as db:
        runs = train_jobs(jobs, corpus, base, db, checkpoints, tokens_multiplier, Bars(not json_out), cluster,
                          gpus_per_run, peak)  # fmt: skip
    if json_out:
        return emit_json(runs)
    rows = [
        [
            r.arch_name,
            si(r.n_params),
            si(r.tokens),
            r.steps,
            f"{r.final_loss:.4f}",
            f"{r.final_bpb:.3f}" if r.final_bpb else "—",
            f"{r.tokens_per_s:,.0f}",
            _mfu(r.environment or {}),
        ]
        for r in runs
    ]
    columns = ["arch", "N (non-emb.)", "tokens", "steps", "final val loss", "bits/byte", "tok/s", "MFU"]
    out.print(table(f"training runs ({corpus.source})", columns, rows, right={1, 2, 3, 4, 5, 6, 7}))
    shaky = {(r.environment or {}).get("peak_device") for r in runs if (r.environment or {}).get("peak_uncertain")}
    for name in sorted(n for n in shaky if n):
        err.print(f"MFU ~: the catalogue's peak of {name} is a placeholder (uncertain); an MFU over 100 % means it is "
                  "too low: measure it (`cobench kernels run`) or give --peak-device")  # fmt: skip
    return None
