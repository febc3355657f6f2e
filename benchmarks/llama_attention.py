"""llama.cpp attention probe: what one (query, key) pair costs in ggml's CPU flash attention, by head size and
grouping, for the operator model's `scores` class (docs/calibration.md).

Four-layer models whose attention is nearly all of the work (a 256-token vocabulary, d_ff 64), F32 weights and
llama.cpp's F16 cache, through llama.cpp's own C API: the prompt's time at several lengths, fitted as
a·P + b·P² (b per visible pair and head), and a decode step's time after prompts of several lengths (its slope
per cached position and head). Best of three per point; run it on a quiet machine (llama.cpp logs to stderr:
`python benchmarks/llama_attention.py 2>/dev/null`).

`--walk`: the decode step's cost per cached position and head by the KV row's stride instead (head sizes 32, 64
and 128, one to sixteen KV heads: llama.cpp keeps every KV head of a cell in one row, and walks a head's slice of
each row once per query head), beside what a plain strided read costs this machine: numpy summing one slice of
every row of K and V buffers as large as the model's, per query head, against the same slice read from contiguous
rows. That last column is the machine's, not llama.cpp's (docs/engines.md).

`--prompts P,P,...`: the contexts the slopes are fitted over (default 256 … 3,072). A strided walk's cost per
position grows with its footprint (on a Xeon VM, 2026-12-07: head size 64, 512-byte rows, ×2.2 over 256–3,072
positions, ×1.5 over 128–768), so probe at the contexts whose steps are to be priced.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.measure.runners.llama_cpp import build

SHAPES = {  # name: (d_model, n_heads, n_kv_heads, head_dim)
    "MHA hd32": (192, 6, 6, 32),
    "GQA 4/2 hd32": (128, 4, 2, 32),
    "MHA hd64": (256, 4, 4, 64),
    "GQA 9/3 hd64": (576, 9, 3, 64),
    "MQA hd64": (256, 4, 1, 64),
    "MQA hd128": (256, 2, 1, 128),
}
WALK_SHAPES = {  # name: (d_model, n_heads, n_kv_heads, head_dim); rows of n_kv_heads × head_dim F16 values
    **{f"hd32 kv{kv}": (32 * max(kv, 8), max(kv, 8), kv, 32) for kv in (1, 2, 8, 16)},
    **{f"hd64 kv{kv}": (64 * max(kv, 4), max(kv, 4), kv, 64) for kv in (1, 2, 4, 6, 8, 10, 12)},
    **{f"hd128 kv{kv}": (128 * max(kv, 2), max(kv, 2), kv, 128) for kv in (1, 2, 4, 6)},
}
KV_BYTES = 2  # llama.cpp's F16 cache
LAYERS = 4
PROMPTS = (256, 768, 1536, 2304, 3072)  # the default contexts (--prompts)
MAX_CONTEXT = 4096  # the probes' max_seq_len
STEPS = 24


def probe(arch: Architecture, path: Path, threads: int, prompts: tuple[int, ...]) -> tuple[float, float]:
    """(ns per visible prompt pair and head, ns per decode step's cached position and head), fitted over
    `prompts`."""
    import llama_cpp

    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = max(prompts) + STEPS
    cp.n_threads = cp.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, cp)
    one = (llama_cpp.llama_token * 1)()
    prefill: dict[int, float] = {}
    step: dict[int, float] = {}
    try:
        for _ in range(3):
            for p in prompts:
                ids = np.random.default_rng(p).integers(0, arch.vocab_size, p)
                prompt = (llama_cpp.llama_token * p)(*ids.tolist())
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
                t0 = time.perf_counter()
                llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(prompt, p))
                llama_cpp.llama_get_logits_ith(ctx, -1)
                prefill[p] = min(prefill.get(p, np.inf), time.perf_counter() - t0)
                times = []
                for i in range(STEPS):
                    one[0] = i % arch.vocab_size
                    t0 = time.perf_counter()
                    llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1))
                    llama_cpp.llama_get_logits_ith(ctx, -1)
                    times.append(time.perf_counter() - t0)
                step[p] = min(step.get(p, np.inf), float(np.median(times[4:])))
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    x = np.array(prompts, dtype=float)
    quadratic = np.linalg.lstsq(np.stack([x, x * x], 1), [prefill[p] for p in prompts], rcond=None)[0][1]
    slope = np.polyfit(x, [step[p] for p in prompts], 1)[0]
    heads = LAYERS * arch.n_heads
    return 2 * quadratic / heads * 1e9, slope / heads * 1e9  # 2: P²/2 visible pairs


def probe_shape(
    vocab: int, d: int, heads: int, kv: int, hd: int, tmp: Path, threads: int, prompts: tuple[int, ...]
) -> tuple[float, float]:
    """`probe` of a LAYERS-layer model of this shape (d_ff 64), written as an F32 GGUF into `tmp`."""
    arch = Architecture(vocab, d, LAYERS, heads, 64, name=f"probe-{vocab}-{d}-{heads}-{kv}", n_kv_heads=kv,
                        head_dim=hd, max_seq_len=MAX_CONTEXT)  # fmt: skip
    return probe(arch, build(arch, "fp32", tmp).directory / "model.gguf", threads, prompts)


def strided_read_ns(slice_bytes: int, row_bytes: int, heads: int, cells: int) -> float:
    """ns per cell and query head to sum one head's slice of each of `cells` rows of a K and a V buffer per layer
    (best of five), the walk llama.cpp makes, without its arithmetic."""
    width, per_row = slice_bytes // 4, row_bytes // slice_bytes
    rng = np.random.default_rng(0)
    buffers = [rng.random((cells, row_bytes // 4), dtype=np.float32) for _ in range(2 * LAYERS)]
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for buf in buffers:
            for q in range(heads):
                h = q * per_row // heads
                buf[:, h * width : (h + 1) * width].sum()
        best = min(best, time.perf_counter() - t0)
    return best / (LAYERS * heads * cells) * 1e9


def walk(args: argparse.Namespace, tmp: Path) -> None:
    """The decode step's cost per cached position and head by the KV row's stride, beside a plain strided read's."""
    print("| shape | slice | row | llama.cpp: ns per cached position and head | × contiguous | strided read: × |")
    print("|---|---:|---:|---:|---:|---:|")
    contiguous: dict[int, tuple[float, float]] = {}
    for name, (d, heads, kv, hd) in WALK_SHAPES.items():
        _, position = probe_shape(args.vocab, d, heads, kv, hd, tmp, args.threads, args.prompts)
        read = strided_read_ns(hd * KV_BYTES, kv * hd * KV_BYTES, heads, max(args.prompts))
        base = contiguous.setdefault(hd, (position, read))  # kv 1 comes first: one head's slice is the whole row
        print(f"| {name} | {hd * KV_BYTES} B | {kv * hd * KV_BYTES} B | {position:.1f} | {position / base[0]:.2f} "
              f"| {read / base[1]:.2f} |", flush=True)  # fmt: skip


def prompt_list(text: str) -> tuple[int, ...]:
    """--prompts: two or more distinct lengths, each ≥ 1, the longest plus the decoded steps within the probes'
    context."""
    try:
        prompts = tuple(sorted({int(p) for p in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if len(prompts) < 2 or prompts[0] < 1 or prompts[-1] + STEPS > MAX_CONTEXT:
        raise argparse.ArgumentTypeError(f"two or more distinct lengths from 1 to {MAX_CONTEXT - STEPS}, got {text!r}")
    return prompts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--walk", action="store_true", help="by the KV row's stride, beside a plain strided read")
    parser.add_argument("--vocab", type=int, default=256, help="--walk: the probes' vocabulary (their LM head's size)")
    parser.add_argument(
        "--prompts",
        type=prompt_list,
        default=PROMPTS,
        metavar="P,P,...",
        help="the contexts each slope is fitted over: a walk's cost per position grows with its footprint, so probe"
        " at the contexts to be priced (default: %(default)s)",
    )
    args = parser.parse_args()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed (pip install '.[llamacpp]')")
        return 1
    print(f"llama.cpp attention, F32 weights, F16 cache, {args.threads} thread(s), {LAYERS} layers, "
          f"prompts {args.prompts}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        if args.walk:
            walk(args, Path(tmp))
            return 0
        print("| shape | head size | prompt: ns per visible pair and head | decode: ns per cached position and head |")
        print("|---|---:|---:|---:|")
        for name, (d, heads, kv, hd) in SHAPES.items():
            pair, position = probe_shape(256, d, heads, kv, hd, Path(tmp), args.threads, args.prompts)
            print(f"| {name} | {hd} | {pair:.2f} | {position:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
