"""Training throughput: `cobench train`'s loop against a bare PyTorch loop training the same model.

Same architecture, weights, optimiser (AdamW), sequence length and batch; the bare loop samples its
batches nanoGPT-style (torch.randint + stack) and does nothing else. Blocks alternate A B B A so drift
hits both equally; the ratio is of the median tokens/s over the blocks. Target: cobench ≥ 0.95 of bare.
cobench's figure is its own reported rate, which counts training steps only (evaluation and checkpoints
are excluded, as they would be from a bare loop's).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from cobench.arch.architecture import Architecture
from cobench.arch.model import build_model
from cobench.fit.corpus import Corpus, load_corpus
from cobench.fit.train import TrainConfig, train

ARCH = Architecture(
    name="bench", vocab_size=256, d_model=192, n_layers=4, n_heads=6, n_kv_heads=2, d_ff=512, max_seq_len=256
)
SEQ, BATCH, STEPS, BLOCKS = 128, 16, 30, 4
TARGET = 0.95


def bare(tokens: np.ndarray, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(ARCH, 0).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.from_numpy(tokens)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        ix = torch.randint(len(data) - SEQ - 1, (BATCH,), generator=gen)
        x = torch.stack([data[i : i + SEQ] for i in ix])
        y = torch.stack([data[i + 1 : i + SEQ + 1] for i in ix])
        logits, _, _ = model(x, all_logits=True)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    float(loss)
    return steps * SEQ * BATCH / (time.perf_counter() - t0)


def ours(corpus: Corpus, steps: int, folder: Path) -> float:
    cfg = TrainConfig(
        tokens=steps * SEQ * BATCH, seq_len=SEQ, batch=BATCH, eval_every=10**9, ckpt_every=10**9, eval_batches=1
    )
    return train(ARCH, corpus, cfg, folder / f"{time.perf_counter_ns()}.pt").tokens_per_s


def main() -> int:
    corpus = load_corpus(budget=1 << 20)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {ARCH.d_model}x{ARCH.n_layers} model, "
          f"batch {BATCH} x {SEQ} tokens, {STEPS} steps per block")  # fmt: skip
    bare(corpus.train, 3)  # warm both paths
    rates: dict[str, list[float]] = {"cobench": [], "bare": []}
    with tempfile.TemporaryDirectory() as tmp:
        ours(corpus, 3, Path(tmp))
        for block in range(BLOCKS):
            order = ("cobench", "bare") if block % 2 == 0 else ("bare", "cobench")
            for name in order:
                rate = ours(corpus, STEPS, Path(tmp)) if name == "cobench" else bare(corpus.train, STEPS)
                rates[name].append(rate)
                print(f"  block {block + 1} {name}: {rate:,.0f} tokens/s", flush=True)
    ratio = statistics.median(rates["cobench"]) / statistics.median(rates["bare"])
    print(
        f"cobench train / bare loop (median tokens/s): {ratio:.3f} (target ≥ {TARGET}): "
        f"{'PASS' if ratio >= TARGET else 'FAIL'}"
    )
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
