"""Short training runs of candidates, for fitting the loss law.

The model is the same torch builder that export uses. AdamW (β = 0.9, 0.95; weight decay on matrices
only), linear warm-up then cosine decay to 10 % of the peak rate, gradient clipping, bf16 autocast on a
GPU, fixed seeds. The batch of step s is drawn from a generator seeded by (seed, s), so a run resumed
from a checkpoint sees exactly the batches the uninterrupted run would have seen, and — with the model
and optimiser state restored — produces the same loss curve. Validation loss (and bits per byte) on fixed
windows every `eval_every` steps; the final loss is the mean of the last `final_evals` evaluations, which
is steadier than the last one alone.

Inside a torch.distributed group (DDP through Ray Train, `cobench train --ray`), each of the W processes
takes its 1/W slice of the same global batch of step s; averaged gradients are the one-process gradients,
so the loss curve is the one-process curve up to float rounding, and a checkpoint (written by rank 0) can
be resumed at any W.
"""

from __future__ import annotations

import math
import os
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


def _group() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group this process belongs to; (0, 1) alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class _Session:
    """A model (`net`; `model` is it wrapped in DDP in a group) with its optimiser and where a (resumed) run
    stands."""

    net: Any
    model: Any
    rank: int
    world: int
    opt: Any
    device: Any
    autocast: Any
    start: int
    curve: list[dict[str, float]]
    train_seconds: float


def _session(arch: Architecture, cfg: TrainConfig, checkpoint: Path) -> _Session:
    """A fresh model and AdamW (weight decay on matrices only), restored from the checkpoint when there is one."""
    import torch

    from cobench.arch.model import build_model

    rank, world = _group()
    if cfg.batch % world:
        raise InputError("batch", f"{cfg.batch} sequences do not split over {world} processes per run")
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    net = build_model(arch, cfg.seed).to(device).train()
    model = net
    if world > 1:  # unrouted experts get no gradient in a step: DDP must look for them
        model = torch.nn.parallel.DistributedDataParallel(net, find_unused_parameters=arch.n_experts > 0)
    matrices = [p for p in net.parameters() if p.dim() >= 2]
    vectors = [p for p in net.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": cfg.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    )  # bf16 on GPU; CPU bf16 is emulated on most CPUs and would only be slower
    s = _Session(net, model, rank, world, opt, device, autocast, 0, [], 0.0)
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        s.start, s.curve, s.train_seconds = state["step"], state["curve"], state["train_seconds"]
    return s


def _loss(model: Any, s: _Session, tokens: np.ndarray, step: int, seed: int, cfg: TrainConfig, part: slice) -> Any:
    from torch.nn import functional as F

    x, y = batch_at(tokens, step, seed, cfg.batch, cfg.seq_len)
    with s.autocast:
        logits, _, _ = model(x[part].to(s.device), all_logits=True)
        return F.cross_entropy(logits.float().flatten(0, 1), y[part].to(s.device).flatten())


def _evaluate(s: _Session, corpus: Corpus, cfg: TrainConfig) -> float:
    """Mean validation loss over cfg.eval_batches fixed batches (the same ones at every evaluation)."""
    import torch

    s.net.eval()  # every process evaluates the whole batch on its (identical) weights
    with torch.no_grad():
        losses = [float(_loss(s.net, s, corpus.val, i, cfg.seed + 1_000_003, cfg, slice(None)))
                  for i in range(cfg.eval_batches)]  # fmt: skip
    s.net.train()
    return float(np.mean(losses))


def _train_step(s: _Session, corpus: Corpus, cfg: TrainConfig, step: int) -> float:
    """One optimiser step at the scheduled learning rate; returns the training loss of the whole batch (after
    the step is done)."""
    import torch

    for group in s.opt.param_groups:
        group["lr"] = cfg.lr_at(step)
    share = cfg.batch // s.world
    loss = _loss(s.model, s, corpus.train, step, cfg.seed, cfg, slice(s.rank * share, (s.rank + 1) * share))
    s.opt.zero_grad(set_to_none=True)
    loss.backward()  # in a group, DDP averages the gradients: those of the whole batch
    torch.nn.utils.clip_grad_norm_(s.net.parameters(), cfg.grad_clip)
    s.opt.step()
    loss = loss.detach()
    if s.world > 1:
        torch.distributed.all_reduce(loss)
        loss /= s.world
    return float(loss)  # synchronises: the step is done


def _save(s: _Session, checkpoint: Path, done: int) -> None:
    """Atomic: a crash leaves the previous checkpoint. In a group rank 0 writes it (the others wait), to
    storage every process sees."""
    import torch

    if s.rank == 0:
        tmp = checkpoint.with_suffix(".tmp")
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": s.net.state_dict(), "optimizer": s.opt.state_dict(), "step": done}
        torch.save(state | {"curve": s.curve, "train_seconds": s.train_seconds}, tmp)
        tmp.replace(checkpoint)
    if s.world > 1:
        torch.distributed.barrier()


def train(
    arch: Architecture,
    corpus: Corpus,
    cfg: TrainConfig,
    checkpoint: Path,
    progress: Callable[[Progress], None] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train (or resume from `checkpoint`) to cfg.tokens; `stop_after` ends early after that step (tests)."""
    if arch.vocab_size < corpus.vocab_size:
        raise InputError(
            "arch.vocab_size", f"{arch.vocab_size} is smaller than the corpus vocabulary {corpus.vocab_size}"
        )
    if cfg.seq_len > arch.max_seq_len:
        raise InputError("seq-len", f"{cfg.seq_len} exceeds the architecture's max_seq_len {arch.max_seq_len}")
    s = _session(arch, cfg, checkpoint)
    for step in range(s.start, cfg.steps):
        t0 = time.perf_counter()
        train_loss = _train_step(s, corpus, cfg, step)
        s.train_seconds += time.perf_counter() - t0
        done = step + 1
        val = None
        if done % cfg.eval_every == 0 or done == cfg.steps:
            val = _evaluate(s, corpus, cfg)
            s.curve.append(
                {"step": done, "tokens": done * cfg.tokens_per_step, "train_loss": train_loss, "val_loss": val}
            )
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            _save(s, checkpoint, done)
        if progress:
            rate = (done - s.start) * cfg.tokens_per_step / max(s.train_seconds, 1e-9) if done > s.start else 0
            progress(Progress(done, cfg.steps, rate, train_loss, val))
        if stop_after is not None and done >= stop_after:
            break
    return _result(arch, corpus, cfg, s)


def _backend(s: _Session) -> dict[str, str]:
    import torch.distributed as dist

    return {"dist_backend": str(dist.get_backend())} if s.world > 1 else {}


def _result(arch: Architecture, corpus: Corpus, cfg: TrainConfig, s: _Session) -> TrainResult:
    import torch

    finals = [c["val_loss"] for c in s.curve[-cfg.final_evals :]]
    final = float(np.mean(finals)) if finals else float("nan")
    counts = param_counts(arch)
    steps_done = s.curve[-1]["step"] if s.curve else s.start
    return TrainResult(
        key="",
        arch=arch.name,
        steps=int(steps_done),
        tokens=int(steps_done * cfg.tokens_per_step),
        final_loss=final,
        final_bpb=final / math.log(2) / corpus.bytes_per_token if not math.isnan(corpus.bytes_per_token) else None,
        curve=s.curve,
        tokens_per_s=int(steps_done) * cfg.tokens_per_step / s.train_seconds if s.train_seconds else 0.0,
        train_seconds=s.train_seconds,
        resumed_from=s.start,
        n_params=int(counts.active - counts.embedding),
        n_params_total=int(counts.total),
        flops_per_token=training_flops_per_token(arch, cfg.seq_len),
        environment={
            "torch": torch.__version__,
            "device": str(s.device),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "world": s.world,
        }
        | _backend(s),  # fmt: skip
    )
