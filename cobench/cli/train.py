"""`cobench train`: short training runs of candidates (one, or a queue), resumable, into the store."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cobench.architecture import param_counts
from cobench.cli.common import JsonOpt, StoreOpt, app, handles_errors, open_store
from cobench.errors import InputError
from cobench.render import emit_json, err, out, si, table
from cobench.spec import load_architecture, read_queue

DEFAULT_CHECKPOINTS = Path(".cobench/train")


@app.command("train")
@handles_errors
def train_cmd(
    arch: Annotated[list[str] | None, typer.Option("--arch", "-a", help="Architecture SPEC (repeatable).")] = None,
    tokens: Annotated[int | None, typer.Option("--tokens", "-t", help="Training tokens per run.")] = None,
    queue: Annotated[
        Path | None, typer.Option("--queue", help="YAML of jobs (arch, tokens), e.g. from `cobench select`.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Training text file or nanoGPT .bin (default: Python stdlib text).")
    ] = None,
    val: Annotated[Path | None, typer.Option("--val", help="Validation file (default: the tail of the data).")] = None,
    tokenizer: Annotated[
        Path | None, typer.Option("--tokenizer", help="tokenizer.json (needs `tokenizers`); default: bytes.")
    ] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Tokens per training sequence.")] = 128,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Sequences per step.")] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW).")] = 3e-3,
    eval_every: Annotated[int, typer.Option("--eval-every", help="Validate every this many steps.")] = 25,
    ckpt_every: Annotated[int, typer.Option("--ckpt-every", help="Checkpoint every this many steps.")] = 25,
    seed: Annotated[int, typer.Option("--seed", help="Weights and batch order.")] = 0,
    tokens_multiplier: Annotated[
        float,
        typer.Option(
            "--tokens-multiplier", help="Scale every job's budget (e.g. 0.5: a second point on the data axis)."
        ),
    ] = 1.0,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (bf16 autocast on cuda).")] = "cpu",
    checkpoints: Annotated[
        Path, typer.Option("--checkpoint-dir", help="Where interrupted runs keep their state.")
    ] = DEFAULT_CHECKPOINTS,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Train candidates for a token budget; finished runs are skipped, interrupted ones resume."""
    from cobench.corpus import load_corpus
    from cobench.train import TrainConfig, run_key, train

    jobs = read_queue(queue) if queue else []
    jobs += [(load_architecture(s), tokens) for s in arch or []]
    if not jobs:
        raise InputError("arch", "give --arch SPEC (repeatable) or --queue FILE")
    if any(t is None for _, t in jobs) and tokens is None:
        raise InputError("tokens", "give --tokens N (or tokens for every queue job)")
    if not tokens_multiplier > 0:
        raise InputError("tokens_multiplier", f"must be positive, got {tokens_multiplier}")
    if device not in ("cpu", "cuda"):
        raise InputError("device", f"cpu or cuda, got {device!r}")
    corpus = load_corpus(data, val, tokenizer)
    results = []
    with open_store(store) as db:
        for i, (a, budget) in enumerate(jobs, 1):
            cfg = TrainConfig(
                tokens=int((budget or tokens or 0) * tokens_multiplier),
                seq_len=seq_len,
                batch=batch,
                lr=lr,
                eval_every=eval_every,
                ckpt_every=ckpt_every,
                seed=seed,
                device=device,
            )
            key = run_key(a, corpus, cfg)
            if db.training_status(key) == "done":
                results.append(_stored(db, key))
                if not json_out:
                    err.print(f"[{i}/{len(jobs)}] {a.name} {si(cfg.tokens)} tokens: done before, skipped")
                continue
            counts = param_counts(a)
            row: dict[str, Any] = {
                "key": key,
                "arch_id": db.put_architecture(a.to_dict(), counts.total, counts.active),
                "arch_name": a.name,
                "corpus": f"{corpus.source} sha256:{corpus.sha256}",
                "config": asdict(cfg),
                "n_params": counts.active - counts.embedding,
                "n_params_total": counts.total,
            }
            db.put_training_run(row | {"status": "running", "steps": 0, "tokens": 0, "curve": []})
            with Progress(
                TextColumn(f"[{i}/{len(jobs)}] {a.name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("steps {task.fields[rate]} tok/s loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                console=err,
                disable=json_out,
            ) as bar:
                task = bar.add_task("train", total=cfg.steps, rate="—", loss="—")

                def show(p: Any, task: Any = task, bar: Any = bar) -> None:
                    loss = f"{p.train_loss:.3f}" + (f" (val {p.val_loss:.3f})" if p.val_loss is not None else "")
                    bar.update(task, completed=p.step, rate=f"{p.tokens_per_s:,.0f}", loss=loss)

                r = train(a, corpus, cfg, checkpoints / key / "checkpoint.pt", show)
            db.put_training_run(
                row
                | {
                    "status": "done",
                    "steps": r.steps,
                    "tokens": r.tokens,
                    "final_loss": r.final_loss,
                    "final_bpb": r.final_bpb,
                    "tokens_per_s": r.tokens_per_s,
                    "curve": r.curve,
                    "environment": r.environment | {"resumed_from_step": r.resumed_from},
                }
            )
            results.append(_stored(db, key))
    if json_out:
        return emit_json(results)
    out.print(
        table(
            f"training runs ({corpus.source})",
            ["arch", "N (non-emb.)", "tokens", "steps", "final val loss", "bits/byte", "tok/s"],
            [
                [
                    r["arch_name"],
                    si(r["n_params"]),
                    si(r["tokens"]),
                    r["steps"],
                    f"{r['final_loss']:.4f}",
                    f"{r['final_bpb']:.3f}" if r["final_bpb"] else "—",
                    f"{r['tokens_per_s']:,.0f}",
                ]
                for r in results
            ],
            right={1, 2, 3, 4, 5, 6},
        )
    )
    return None


def _stored(db: Any, key: str) -> dict[str, Any]:
    return next(r for r in db.training_runs(None) if r["key"] == key)
