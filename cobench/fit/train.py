"""Short training runs of candidates, for fitting the loss law.

The model is the same torch builder that export uses. AdamW (β = 0.9, 0.95; weight decay on matrices
only), linear warm-up then cosine decay to 10 % of the peak rate, gradient clipping, bf16 autocast on a
GPU, fixed seeds. The batch of step s is drawn from a generator seeded by (seed, s), so a run resumed
from a checkpoint sees exactly the batches the uninterrupted run would have seen, and — with the model
and optimiser state restored — produces the same loss curve. Validation loss (and bits per byte) on fixed
windows every `eval_every` steps; the final loss is the mean of the last `final_evals` evaluations, which
is steadier than the last one alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture, param_counts
from cobench.errors import InputError
from cobench.fit.corpus import Corpus
from cobench.records import content_id


@dataclass(frozen=True)
class TrainConfig:
    tokens: int
    seq_len: int = 128
    batch: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None  # default: 5 % of the steps (at least 1)
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 25
    eval_batches: int = 4
    final_evals: int = 3
    ckpt_every: int = 25
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for key in ("tokens", "seq_len", "batch", "eval_every", "eval_batches", "final_evals", "ckpt_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(key.replace("_", "-"), f"must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise InputError("lr", f"must be positive, got {self.lr}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.tokens / self.tokens_per_step))

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 20)

    def lr_at(self, step: int) -> float:
        """Linear warm-up to `lr`, then cosine to `min_lr_ratio · lr` at the last step."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def run_key(arch: Architecture, corpus: Corpus, cfg: TrainConfig) -> str:
    """What determines a run: architecture (not its name), data, and every hyper-parameter."""
    body = {k: v for k, v in arch.to_dict().items() if k != "name"}
    return content_id([body, corpus.sha256, asdict(cfg)])


@dataclass
class Progress:
    step: int
    steps: int
    tokens_per_s: float
    train_loss: float
    val_loss: float | None


@dataclass
class TrainResult:
    key: str
    arch: str
    steps: int
    tokens: int
    final_loss: float
    final_bpb: float | None
    curve: list[dict[str, float]]
    tokens_per_s: float  # training steps only (evaluation and checkpoints excluded)
    train_seconds: float
    resumed_from: int
    n_params: int  # non-embedding, active (the loss law's N)
    n_params_total: int
    flops_per_token: float
    environment: dict[str, Any] = field(default_factory=dict)


def batch_at(tokens: np.ndarray, step: int, seed: int, batch: int, seq_len: int) -> tuple[Any, Any]:
    """The (inputs, targets) of a step: windows at positions drawn from a (seed, step) generator."""
    import torch

    if len(tokens) <= seq_len + 1:
        raise InputError("seq-len", f"the training text has {len(tokens)} tokens, fewer than --seq-len {seq_len} + 1")
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch)
    window = np.stack([tokens[s : s + seq_len + 1] for s in starts])
    t = torch.from_numpy(window)
    return t[:, :-1], t[:, 1:]


def training_flops_per_token(a: Architecture, seq_len: int) -> float:
    """6 per active weight (forward + backward), LM head included, plus causal attention (6·L·T·width/2·2)."""
    counts = param_counts(a)
    weights = counts.active - counts.embedding + a.vocab_size * a.d_model
    return 6 * weights + 6 * a.n_layers * seq_len * a.n_heads * a.head_dim


def train(
    arch: Architecture,
    corpus: Corpus,
    cfg: TrainConfig,
    checkpoint: Path,
    progress: Callable[[Progress], None] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume from `checkpoint`) to cfg.tokens; `stop_after` ends early after that step (tests)."""
    import torch
    from torch.nn import functional as F

    from cobench.arch.model import build_model

    if arch.vocab_size < corpus.vocab_size:
        raise InputError(
            "arch.vocab_size", f"{arch.vocab_size} is smaller than the corpus vocabulary {corpus.vocab_size}"
        )
    if cfg.seq_len > arch.max_seq_len:
        raise InputError("seq-len", f"{cfg.seq_len} exceeds the architecture's max_seq_len {arch.max_seq_len}")
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    model = build_model(arch, cfg.seed).to(device).train()
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    curve: list[dict[str, float]] = []
    start, train_seconds = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, curve, train_seconds = state["step"], state["curve"], state["train_seconds"]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )  # bf16 on GPU; CPU bf16 is emulated on most CPUs and would only be slower

    def evaluate() -> float:
        model.eval()
        losses = []
        with torch.no_grad(), autocast:
            for i in range(cfg.eval_batches):
                x, y = batch_at(corpus.val, i, cfg.seed + 1_000_003, cfg.batch, cfg.seq_len)
                logits, _, _ = model(x.to(device), all_logits=True)
                losses.append(float(F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten())))
        model.train()
        return float(np.mean(losses))

    resumed_from = start
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        x, y = batch_at(corpus.train, step, cfg.seed, cfg.batch, cfg.seq_len)
        with autocast:
            logits, _, _ = model(x.to(device), all_logits=True)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        train_loss = float(loss.detach())  # synchronises: the step is done
        train_seconds += time.perf_counter() - t0
        done = step + 1
        val = None
        if done % cfg.eval_every == 0 or done == cfg.steps:
            val = evaluate()
            curve.append(
                {"step": done, "tokens": done * cfg.tokens_per_step, "train_loss": train_loss, "val_loss": val}
            )
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            tmp = checkpoint.with_suffix(".tmp")
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": done}
            torch.save(state | {"curve": curve, "train_seconds": train_seconds}, tmp)
            tmp.replace(checkpoint)  # atomic: a crash leaves the previous checkpoint
        if progress:
            rate = (done - resumed_from) * cfg.tokens_per_step / max(train_seconds, 1e-9) if done > resumed_from else 0
            progress(Progress(done, cfg.steps, rate, train_loss, val))
        if stop_after is not None and done >= stop_after:
            break
    finals = [c["val_loss"] for c in curve[-cfg.final_evals :]]
    final = float(np.mean(finals)) if finals else float("nan")
    counts = param_counts(arch)
    steps_done = curve[-1]["step"] if curve else start
    return TrainResult(
        key="",
        arch=arch.name,
        steps=int(steps_done),
        tokens=int(steps_done * cfg.tokens_per_step),
        final_loss=final,
        final_bpb=final / math.log(2) / corpus.bytes_per_token if not math.isnan(corpus.bytes_per_token) else None,
        curve=curve,
        tokens_per_s=int(steps_done) * cfg.tokens_per_step / train_seconds if train_seconds else 0.0,
        train_seconds=train_seconds,
        resumed_from=resumed_from,
        n_params=int(counts.active - counts.embedding),
        n_params_total=int(counts.total),
        flops_per_token=training_flops_per_token(arch, cfg.seq_len),
        environment={"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads()},
    )
