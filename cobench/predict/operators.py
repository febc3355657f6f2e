"""Operator model: FLOPs and bytes of every operator of one forward pass, vectorised over candidates.

Counting conventions (the FLOP-counter test and the exported graphs follow the same ones):
- 2 FLOPs per multiply-add everywhere, the LM head included.
- Causal attention is halved by default: T new tokens after C cached ones attend T·C + T(T+1)/2
  (query, key) pairs, as flash-style kernels skip masked blocks. `causal=False` counts T·(C+T), which
  is what `torch.utils.flop_counter` reports for scaled_dot_product_attention.
- Logits are computed for the last position only (`logits="last"`), as a generation engine does;
  training uses `logits="all"`. With `last_layer_outputs` the last layer's residuals, norms and FFN also run
  on those rows only (llama.cpp drops the other rows right after the last layer's attention).
- Embedding gather, norms, RoPE, softmax, activations and residuals are memory traffic (their few
  FLOPs are counted but never make them compute-bound).
- Fresh memory (class "fresh", memory only): with `fresh_logits`, an all-position logits buffer of MMAP_THRESHOLD
  or more is first-touched on every prompt (page faults, not bandwidth). The first decode step after that prompt
  gives the mapping back (class "release", memory only: `release_ops`).
- The softmax over the B·H·pairs scores is class "scores" (compute: exponentials cost far more per score
  than the FLOPs counted for them). Attention is fused by default (the score matrix never leaves the kernel).
  With `fused_attention=False` (ORT's CPU GroupQueryAttention) the scores are also an operator of class
  "scores" in memory: SCORE_PASSES passes over B·H·pairs values.
- Bytes are split into weights, activations and KV cache, so it is visible why an op is memory-bound.
  Each weight and each KV element is read once per forward (batch and GQA groups share the read; but see
  `kv_per_query_head` below).
- KV-cache update (op class "kv", memory only): "append" writes only the new positions; "concat" (what
  the exported graphs and the eager module do) also copies the cached ones into a new tensor every step.
- GQA/MQA K/V expansion: with `kv_expand` the graph repeats K and V to all query heads before attention
  (the eager module's repeat_interleave, hence the exported graphs), writing and reading the wide copy.
  With `kv_per_query_head` the kernel shares K/V in memory but reads its group's K/V once per query head
  (ORT's CPU GroupQueryAttention, ggml's CPU attention): the cache is the compact one, the reads are H-wide.
- Sliding-window layers: with `window_skip` (the default) a query attends at most `window` keys and the
  cache read per step is capped at the window; without it the window is a mask over the whole context.
- MLA: a prompt decompresses keys and values per head; a step against a cache attends over the latent
  (the up-projection absorbed). Linear-attention and convolution layers read and write a fixed state.
- MoE: each token runs top_k experts; the weights read are those of the expected number of distinct
  experts that n routed tokens touch, E·(1 − (1 − k/E)^n) — k for batch-1 decode, up to E in prefill.
  With `moe_loop` (the eager module and its exported graphs) every expert's kernels are launched each
  forward, even for experts no token chose: E launches per expert op.
  With `expert_rows` (llama.cpp on a CPU) the experts' matmuls compute at a GEMV's intensity, prompt or step.
- Strided cache walks (class "walk", memory only): with `strided_kv` every KV head of a cached position shares one
  row (ggml's cache), and a decode step's attention walks one head's slice of every row per query head, so it
  strides over the other heads' bytes. What that costs beyond the slice's own read grows with the bytes skipped
  (`walk_bytes`), priced at the pass's cache tier without adding to its working set. A prompt's has none: its
  queries walk the same slices one after another, found again in the cache.
- One-row matmuls (class "gemv"): with `single_row_gemv` a matmul over one row is a kernel of its own, not the
  GEMM that two or more rows run: llamafile's sgemm declines one column, so ggml runs a step's matmuls as vec_dot
  and a batch's, and a prompt's, in tinyBLAS, whose efficiency climbs with the columns from below vec_dot's
  (llama.cpp, F32, one thread: a step of two sequences took 2.5-3.1x one sequence's). The experts that run row
  by row (`expert_rows`) are that kernel too.

Every array broadcasts: architecture columns may be (N, 1) and `past` (1, S), giving (N, S) ops.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from cobench.arch.architecture import (
    ArchLike,
    layers_of,
    linear_widths,
    mla_q_width,
    moe_layers,
    norm_params,
    qkv_width,
)
from cobench.arch.precision import KV_PRECISIONS, kv_bytes
from cobench.arch.workload import Workload
from cobench.errors import InputError

OP_CLASSES = ("matmul", "attention", "elementwise", "gather", "kv", "scores", "fresh", "gemv", "release", "walk")
LOGITS_BYTES = 4  # engines return fp32 logits
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest mmap threshold (64-bit): a block this large or larger is always a
# fresh mapping


@dataclass(frozen=True)
class Op:
    """One operator of a forward pass; sizes are per occurrence, `count` occurrences per forward."""

    name: str
    op_class: str
    count: Any
    flops: Any
    weight_bytes: Any
    act_bytes: Any
    kv_bytes: Any = 0
    launches: Any = 1  # kernel launches per occurrence (a looped MoE runs every expert's kernels)
    row_intensity: Any = np.inf  # FLOP/B its compute runs at: a kernel that takes each row as a matrix-vector product
    # of its own (ggml's CPU mul_mat_id) computes at a GEMV's efficiency however many rows share the weights
    resident: Any = 1  # the weights a pass finds again on later steps, per weight byte it reads: a MoE's steps
    # each read the experts their token chose, but cycle through all of them (roofline.working_set)

    @property
    def bytes(self) -> Any:
        return self.weight_bytes + self.act_bytes + self.kv_bytes


@dataclass(frozen=True)
class Counting:
    """How a forward pass is counted; see the module docstring."""

    causal: bool = True
    fused_attention: bool = True
    logits: str = "last"
    kv_update: str = "append"  # "append": new K/V written in place (serving engines); "concat": the step
    # returns past ++ new as a fresh tensor, so the whole cache is read and written again (cobench's
    # exported ONNX graphs and the eager torch module do this)
    kv_expand: bool = False  # K/V repeated to n_heads before attention (cobench's graphs), not shared
    kv_per_query_head: bool = False  # shared K/V read again for every query head of the group (CPU kernels that
    # loop over query heads: ORT's GroupQueryAttention, ggml's), the re-reads from wherever the cache sits
    moe_loop: bool = False  # experts run one after another, each its own kernels (cobench's graphs), not grouped
    window_skip: bool = True  # a sliding layer's kernel skips keys outside its window (FlashAttention's local
    # window, llama.cpp's SWA cache); False: masked but computed and read, as ORT's CPU GroupQueryAttention
    # and the torch module do (measured: a 5 : 1 model at P = 4096 prefilled no faster than full attention)
    kv_cache: str | None = None  # the type the engine keeps its KV cache in, whatever the workload's (None: the
    # workload's): llama.cpp stores F16 K/V by default (type_k, type_v) for F32 and quantised weights alike
    last_layer_outputs: bool = False  # the last layer runs what follows its mixer (residuals, norms, FFN) only on
    # the rows whose logits are kept: llama.cpp's graphs take those rows (inp_out_ids) right after the last
    # attention, so a prompt's last FFN is one token's (measured: a 1-layer d = 768 model prefills 512 tokens
    # in 48 ms, a 2-layer one in 172 ms)
    single_row_gemv: bool = False  # a matmul over one row runs a kernel of its own (class "gemv"; module docstring)
    expert_rows: bool = False  # MoE experts' matmuls run row by row, prompt and step alike: ggml's CPU mul_mat_id
    # has no GEMM path (a vec_dot per routed row and weight row, blocked 16 × 16), so a prompt's experts compute at
    # a decode step's GEMV rate (measured on llama.cpp: the MoE prompts came out 20-23 % fast priced as GEMMs)
    strided_kv: bool = False  # a position's KV heads share one cache row and attention walks one head's slice of
    # the rows per query head (ggml's CPU flash attention over llama.cpp's cache): class "walk" (`walk_bytes`)
    fresh_logits: bool = False  # the engine allocates the prompt's logits afresh for every prompt, so a buffer
    # past the C library's mmap threshold is new pages that the kernel faults in and zeroes as the LM head
    # writes them (ORT GenAI on Linux: its [B, P, V] fp32 logits; measured ≈ 1.2 ms per 2 MB on a Xeon VM), and
    # that the first decode step unmaps (`release_ops`)

    @classmethod
    def from_json(cls, data: Any, where: str = "counting") -> Counting:
        """From a stored or user-given mapping: booleans must be booleans, kinds one of theirs."""
        if not isinstance(data, dict):
            raise InputError(where, f"expected a mapping, got {type(data).__name__}")
        choices = {"logits": ("last", "all"), "kv_update": ("append", "concat"), "kv_cache": (None, *KV_PRECISIONS)}
        known = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise InputError(f"{where}.{key}", f"unknown field (known: {', '.join(known)})")
            if key in choices and value not in choices[key]:
                raise InputError(f"{where}.{key}", f"one of {', '.join(map(str, choices[key]))}, got {value!r}")
            if key not in choices and not isinstance(value, bool):
                raise InputError(f"{where}.{key}", f"expected true/false, got {value!r}")
        return cls(**data)

    def logit_rows(self, batch: Any, tokens: Any) -> Any:
        """Rows of logits a forward pass of `batch` sequences × `tokens` new tokens computes: every position's, or
        each sequence's last."""
        return batch * tokens if self.logits == "all" else batch

    def kv_element_bytes(self, workload_kv: float) -> float:
        """Bytes per KV element the engine really stores: its own cache type where it has one."""
        return kv_bytes(self.kv_cache, "counting.kv_cache") if self.kv_cache else workload_kv

    def workload(self, w: Workload) -> Workload:
        """`w` as the engine runs it: with its own KV type where it keeps one (llama.cpp: F16, whatever the
        weights), so a record says what ran."""
        return replace(w, kv_precision=self.kv_cache) if self.kv_cache else w


def linear(
    name: str, rows: Any, d_in: Any, d_out: Any, bias: Any, count: Any, wb: float, ab: float, copies: Any = 1
) -> Op:
    """rows × d_in @ d_in × d_out; `copies` distinct weight matrices read (MoE experts touched)."""
    return Op(
        name,
        "matmul",
        count,
        flops=2 * rows * d_in * d_out,
        weight_bytes=copies * (d_in * d_out + bias * d_out) * wb,
        act_bytes=rows * (d_in + d_out) * ab,
    )


def elementwise(name: str, elems_in: Any, elems_out: Any, flops_per_out: float, count: Any, ab: float) -> Op:
    return Op(name, "elementwise", count, flops_per_out * elems_out, 0, (elems_in + elems_out) * ab)


def expected_experts(n_experts: Any, top_k: Any, tokens: Any) -> Any:
    """Distinct experts touched when `tokens` tokens each pick top_k of n_experts (uniform routing)."""
    e = np.maximum(n_experts, 1)
    return np.where(n_experts > 0, e * (1 - (1 - top_k / e) ** tokens), 0)


def attention_pairs(tokens: Any, past: Any, causal: bool) -> Any:
    """(query, key) pairs per sequence and head for T new tokens after `past` cached ones."""
    return tokens * past + (tokens * (tokens + 1) / 2 if causal else tokens * tokens)


def window_pairs(tokens: Any, past: Any, window: Any) -> Any:
    """Causal (query, key) pairs of T new tokens after `past` cached ones when each query sees at most
    `window` keys: Σ over new positions i of min(i + 1, W), in closed form (S(n) = Σ_{j ≤ n} min(j, W))."""
    w = np.maximum(window, 1)

    def upto(n: Any) -> Any:
        inside = np.minimum(n, w)
        return inside * (inside + 1) / 2 + np.maximum(n - w, 0) * w

    return upto(past + tokens) - upto(past)


def walk_bytes(heads: Any, kv_heads: Any, slice_bytes: Any, positions: Any) -> Any:
    """The bytes one query token's strided walk over `positions` cached rows strides over, K and V, for class
    "walk": per query head, the other KV heads' slices between one of its own and the next. Measured through
    llama.cpp's own decode (benchmarks/llama_attention.py --walk, F16 cache, Xeon VM, 2026-12-07), the extra time
    per cached position and head grew with the bytes skipped at every head size (at head size 64: ×1.14 the
    contiguous walk's with 128 bytes skipped, ×4.1 with 1,408); with one KV head there is no stride and none."""
    return heads * positions * 2 * (kv_heads - 1) * slice_bytes


SCORE_PASSES = 4  # a materialised score matrix: written by QKᵀ, read and rewritten by the softmax, read by AV


def attention_ops(
    name: str,
    count: Any,
    head_dim: Any,
    pairs: Any,
    act_bytes: Any,
    kv_bytes: Any,
    ab: float,
    counting: Counting,
    softmax_flops: Any = 5,
    weight_bytes: Any = 0,
) -> list[Op]:
    """Scaled dot-product attention over `pairs` (query, key) pairs (all heads): QKᵀ and AV, and the softmax.
    A score costs far more than its head size's dot products say, at every head size: ORT's CPU
    GroupQueryAttention ~2 ns per score and query head at head sizes 32 to 128 alike, ggml's CPU flash attention
    4 ns plus 0.07 ns per head dimension (measured), so the per-score work has a class of its own, "scores",
    apart from the attention's head-size-proportional dot products. The softmax (its max, exponentials and sums,
    or a fused kernel's online rescaling) is its compute. Materialised (`fused_attention=False`), the scores are
    also an operator of that class in memory: QKᵀ writes them, the softmax reads and rewrites them, AV reads
    them (SCORE_PASSES). A model's layers and the attention kernels of calibration are priced by this one
    function."""
    ops = [
        Op(name, "attention", count, 4 * head_dim * pairs, weight_bytes, act_bytes, kv_bytes),
        Op(f"{name}_softmax", "scores", count, softmax_flops * pairs, 0, 0),
    ]
    if not counting.fused_attention:
        ops.append(Op(f"{name}_scores", "scores", count, 0, 0, SCORE_PASSES * pairs * ab))
    return ops


DELTA_CHUNK = 64  # the chunked gated delta rule's block (flash-linear-attention, transformers' torch path)
DELTA_STATE_FLOPS = 7  # per key × value element and token: decay, Sᵀk, the rank-1 update, Sᵀq


def mixer_ops(
    a: ArchLike, batch: Any, tokens: Any, past: Any, wb: float, ab: float, kvb: float, counting: Counting
) -> list[Op]:
    """The token mixers of every layer kind: each op counted over the layers of its kind (0 where absent)."""
    d, n = a.d_model, batch * tokens
    layers = layers_of(a)
    gqa = layers["full"] + layers["sliding"]
    q_width, kv_width = a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim
    copied = batch * past * 2 if counting.kv_update == "concat" else 0  # read + write of the old positions
    # K/V bytes per cached position that attention reads: compact, or (expanded) compact read + wide write + wide read
    grouped = (a.n_kv_heads < a.n_heads) & counting.kv_expand
    attended_width = np.where(grouped, kv_width + 2 * q_width, kv_width)
    full_pairs = batch * a.n_heads * attention_pairs(tokens, past, counting.causal)
    local_pairs, local_seen = full_pairs, past + tokens
    if counting.window_skip and np.any(layers["sliding"] > 0):
        local_pairs = batch * a.n_heads * window_pairs(tokens, past, a.sliding_window)
        local_seen = np.minimum(past + tokens, np.maximum(a.sliding_window, 1))
    softmax_flops = 5 + 2 * (a.attn_softcap > 0)  # a soft-cap adds tanh and a scale per score
    ops = [
        linear("qkv_proj", n, d, qkv_width(a), a.qkv_bias, gqa, wb, ab),
        elementwise("qk_norm", n * (q_width + kv_width), n * (q_width + kv_width), 4, gqa * (a.qk_norm > 0), ab),
        elementwise("rope", n * (q_width + kv_width), n * (q_width + kv_width), 3, gqa - a.n_nope, ab),
        Op("kv_write", "kv", gqa, 0, 0, n * 2 * kv_width * ab, (n + copied) * 2 * kv_width * kvb),
    ]
    for name, count, pairs, seen in [
        ("attention", layers["full"], full_pairs, past + tokens),
        ("attention_local", layers["sliding"], local_pairs, local_seen),
    ]:
        sinks = a.attention_sinks * a.n_heads * wb
        kv = batch * seen * 2 * attended_width * kvb
        reread = np.where(grouped, 0, batch * seen * 2 * (q_width - kv_width) * kvb * counting.kv_per_query_head)
        ops += attention_ops(
            name, count, a.head_dim, pairs, 2 * n * q_width * ab + reread, kv, ab, counting, softmax_flops, sinks
        )
        if counting.strided_kv and np.all(np.equal(tokens, 1)):  # a step's: only where the engine walks so
            walked = batch * walk_bytes(a.n_heads, a.n_kv_heads, a.head_dim * kvb, seen)
            ops.append(Op(f"{name}_walk", "walk", count, 0, 0, 0, walked))
    ops += [
        elementwise("output_gate", 2 * n * q_width, n * q_width, 4, gqa * a.attn_output_gate, ab),
        linear("o_proj", n, q_width, d, a.o_bias, gqa, wb, ab),
    ]
    if np.any(a.n_mla > 0):
        ops += mla_ops(a, batch, tokens, past, wb, ab, kvb, counting)
    if np.any(a.n_linear + a.n_conv > 0):
        ops += recurrent_ops(a, batch, tokens, wb, ab, kvb)
    return ops


def mla_ops(
    a: ArchLike, batch: Any, tokens: Any, past: Any, wb: float, ab: float, kvb: float, counting: Counting
) -> list[Op]:
    """MLA layers as serving engines run them (vLLM, FlashMLA): the cache holds the latent and the shared RoPE
    key; a prompt (no cache yet) decompresses keys and values per head, a step against a cache absorbs the
    up-projection into the query and the output, attending over the latent itself (MQA-like, one KV head)."""
    d, n, count = a.d_model, batch * tokens, a.n_mla
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    latent = a.kv_lora_rank + a.qk_rope_head_dim
    pairs = batch * a.n_heads * attention_pairs(tokens, past, counting.causal)
    per_pair = np.where(past > 0, 2 * latent + 2 * a.kv_lora_rank, 2 * qk + 2 * a.v_head_dim)
    low = a.q_lora_rank > 0
    return [
        linear("mla_q_down", n * low, d, a.q_lora_rank, a.qkv_bias, count, wb, ab, copies=low),
        linear("mla_q_up", n, np.where(low, a.q_lora_rank, d), mla_q_width(a), 0, count, wb, ab),
        linear("mla_kv_down", n, d, latent, a.qkv_bias, count, wb, ab),
        elementwise(
            "mla_norms", n * (a.q_lora_rank + a.kv_lora_rank), n * (a.q_lora_rank + a.kv_lora_rank), 4, count, ab
        ),
        elementwise(
            "mla_rope", n * (a.n_heads + 1) * a.qk_rope_head_dim, n * (a.n_heads + 1) * a.qk_rope_head_dim, 3, count, ab
        ),
        linear("mla_kv_up", n, a.kv_lora_rank, a.n_heads * (a.qk_nope_head_dim + a.v_head_dim), 0, count, wb, ab),
        Op("mla_latent_write", "kv", count, 0, 0, n * latent * ab, n * latent * kvb),
        Op(
            "mla_attention",
            "attention",
            count,
            flops=per_pair * pairs,
            weight_bytes=0,
            act_bytes=n * a.n_heads * (qk + a.v_head_dim) * ab,
            kv_bytes=batch * (past + tokens) * latent * kvb,
        ),
        Op("mla_softmax", "elementwise", count, 5 * pairs, 0, 0),
        linear("mla_o_proj", n, a.n_heads * a.v_head_dim, d, a.o_bias, count, wb, ab),
    ]


def recurrent_ops(a: ArchLike, batch: Any, tokens: Any, wb: float, ab: float, kvb: float) -> list[Op]:
    """Layers whose state does not grow with the context: gated delta-net linear attention (a key × value
    state per value head, updated per token; a prompt runs the chunked scan, whose intra-chunk part is
    attention within blocks of DELTA_CHUNK) and short convolutions (the last kernel − 1 inputs). Each
    forward reads and writes its state once."""
    d, n = a.d_model, batch * tokens
    key, value = linear_widths(a)
    conv_dim = 2 * key + value
    heads, dk, dv = a.linear_value_heads, a.linear_key_dim, a.linear_value_dim
    state = batch * (heads * dk * dv + conv_dim * (a.linear_conv_kernel - 1))
    chunk = np.minimum(tokens, DELTA_CHUNK)
    lin, conv = a.n_linear, a.n_conv
    conv_state = batch * d * (a.conv_kernel - 1)
    return [
        linear("delta_in_proj", n, d, 2 * key + 2 * value + 2 * heads, 0, lin, wb, ab),
        Op(
            "delta_conv",
            "elementwise",
            lin,
            2 * n * conv_dim * a.linear_conv_kernel,
            conv_dim * a.linear_conv_kernel * wb,
            2 * n * conv_dim * ab,
        ),  # fmt: skip
        Op(
            "delta_rule",
            "attention",
            lin,
            flops=n * heads * (DELTA_STATE_FLOPS * dk * dv + 2 * chunk * (dk + dv)),
            weight_bytes=2 * heads * wb,
            act_bytes=n * (conv_dim + value + 2 * heads) * ab,
            kv_bytes=2 * state * kvb,
        ),
        elementwise("delta_gated_norm", 2 * n * value, n * value, 6, lin, ab),
        linear("delta_out_proj", n, value, d, 0, lin, wb, ab),
        linear("conv_in_proj", n, d, 3 * d, a.conv_bias, conv, wb, ab),
        Op(
            "short_conv",
            "elementwise",
            conv,
            n * d * (2 * a.conv_kernel + 2),
            d * a.conv_kernel * wb,
            4 * n * d * ab,
            kv_bytes=2 * conv_state * kvb,
        ),  # fmt: skip
        linear("conv_out_proj", n, d, d, a.conv_bias, conv, wb, ab),
    ]


def fresh_bytes(logits: Any) -> Any:
    """Bytes of a freshly mapped fp32 logits buffer: all of it from the mmap threshold on, none below (reused heap)."""
    nbytes = logits * LOGITS_BYTES
    return np.where(nbytes >= MMAP_THRESHOLD, nbytes, 0)  # glibc maps a request of the threshold or more (its
    # chunk header makes exactly 32 MiB more): ORT GenAI, P = 2,048 at a 4,096-token vocabulary, 2026-12-07


def release_ops(a: ArchLike, w: Workload, counting: Counting) -> list[Op]:
    """What the first decode step after a prompt pays for that prompt beyond its own work: unmapping the pages of
    the prompt's fresh logits (`fresh_bytes`) when the step's logits replace them. ORT GenAI, fp32, one thread, on
    the EPYC VM (tr-small-2l): the first step took 3.2, 3.7, 4.4, 5.2 and 6.0 ms after prompts with 32, 40, 48, 56
    and 64 MiB of logits, 0.6 ms after 31 MiB (steady steps 0.23-0.38 ms): ≈ 0.09 ms per MiB, about a sixth of
    faulting them in, so a class of its own. Left out, the study priced its long prompts' and batch-4 steps
    20-33 % fast. A workload that generates one token has no such step (its TPOT is a step on a fixed cache)."""
    count = int(counting.fresh_logits and w.generate > 1)
    return [
        Op("logits_release", "release", count, 0, 0, fresh_bytes(counting.logit_rows(w.batch, w.prompt) * a.vocab_size))
    ]


def forward_ops(
    a: ArchLike, batch: Any, tokens: Any, past: Any, wb: float, ab: float, kvb: float, counting: Counting
) -> list[Op]:
    """All operators of one forward pass of `batch` sequences × `tokens` new tokens after `past` cached."""
    d, layers = a.d_model, a.n_layers
    n = batch * tokens
    logit_rows = counting.logit_rows(batch, tokens)
    norm = norm_params(a)
    moe_count = moe_layers(a)
    ops = [
        Op("embed", "gather", 1, 0, np.minimum(n, a.vocab_size) * d * wb, n * d * ab),
        Op("attn_norm", "elementwise", layers, 4 * n * d, norm * ab, 2 * n * d * ab),
        *one_row(mixer_ops(a, batch, tokens, past, wb, ab, kvb, counting), n, counting),
    ]
    if counting.last_layer_outputs and logit_rows < n:  # a prompt: the last layer (MoE where any is: they come
        # last) past its mixer on the kept rows; a step keeps all its rows and needs no second set of ops
        last_moe = np.where(moe_count > 0, 1, 0)
        ops += one_row(
            ffn_ops(a, n, layers - 1, moe_count - last_moe, wb, ab, counting.moe_loop, counting.expert_rows),
            n,
            counting,
        )
        ops += one_row(
            ffn_ops(a, logit_rows, 1, last_moe, wb, ab, counting.moe_loop, counting.expert_rows), logit_rows, counting
        )
    else:
        ops += one_row(ffn_ops(a, n, layers, moe_count, wb, ab, counting.moe_loop, counting.expert_rows), n, counting)
    ops += [
        Op("final_norm", "elementwise", 1, 4 * logit_rows * d, norm * ab, 2 * logit_rows * d * ab),
        *one_row([linear("lm_head", logit_rows, d, a.vocab_size, 0, 1, wb, ab)], logit_rows, counting),
        Op("logits_fresh", "fresh", int(counting.fresh_logits), 0, 0, fresh_bytes(logit_rows * a.vocab_size)),
        elementwise(
            "logit_softcap", logit_rows * a.vocab_size, logit_rows * a.vocab_size, 3, 1 * (a.final_softcap > 0), 4
        ),
    ]
    return [op for op in ops if np.any(np.asarray(op.count) > 0)]  # what no candidate runs has nothing to price


def one_row(ops: list[Op], rows: Any, counting: Counting) -> list[Op]:
    """`ops`, run on `rows` rows each, with their matmuls in class "gemv" when those are one row and the backend runs
    such a matmul as a kernel of its own (`Counting.single_row_gemv`)."""
    if not (counting.single_row_gemv and np.all(np.asarray(rows) == 1)):
        return ops
    return [replace(op, op_class="gemv") if op.op_class == "matmul" else op for op in ops]


def ffn_ops(
    a: ArchLike, n: Any, layers: Any, moe_count: Any, wb: float, ab: float, moe_loop: bool, expert_rows: bool = False
) -> list[Op]:
    """What `layers` layers run after their mixer, on `n` rows each: the residuals, the norms around the FFN,
    and the FFN (dense in all but `moe_count` of them); `expert_rows`: see Counting."""
    d, dense_count = a.d_model, layers - moe_count
    gated_in = np.where(a.gated, 2, 1)  # gate and up projections read the same input: one fused matmul
    shared_w = a.n_shared_experts * a.d_ff_shared
    has_shared = shared_w > 0
    gate = np.where(a.shared_expert_gate > 0, 1, 0)
    routed = n * a.top_k
    touched = expected_experts(a.n_experts, a.top_k, n)
    cycled = np.divide(a.n_experts, touched, out=np.ones_like(touched, dtype=np.float64), where=touched > 0)
    norm = norm_params(a)
    expert_launches = np.maximum(a.n_experts, 1) if moe_loop else 1
    expert_rate = 2 / wb if expert_rows else np.inf  # one row's GEMV: 2 FLOPs per weight read
    expert_class = "gemv" if expert_rows else "matmul"
    return [
        Op("post_norms", "elementwise", 2 * layers * (a.norm_layout == 1), 4 * n * d, norm * ab, 2 * n * d * ab),
        elementwise("residual_add", 2 * n * d, n * d, 1, 2 * layers, ab),
        Op("ffn_norm", "elementwise", layers, 4 * n * d, norm * ab, 2 * n * d * ab),
        linear("ffn_up", n, d, gated_in * a.d_ff, a.mlp_bias, dense_count, wb, ab),
        elementwise("ffn_act", gated_in * n * a.d_ff, n * a.d_ff, 5, dense_count, ab),
        linear("ffn_down", n, a.d_ff, d, a.mlp_bias, dense_count, wb, ab),
        linear("router", n, d, a.n_experts + gate, a.router_bias, moe_count, wb, ab),
        linear("shared_up", n * has_shared, d, gated_in * shared_w, a.mlp_bias, moe_count, wb, ab, copies=has_shared),
        elementwise("shared_act", gated_in * n * shared_w, n * shared_w, 5, moe_count, ab),
        linear("shared_down", n * has_shared, shared_w, d, a.mlp_bias, moe_count, wb, ab, copies=has_shared),
        replace(
            linear("experts_up", routed, d, gated_in * a.d_ff_expert, a.mlp_bias, moe_count, wb, ab, copies=touched),
            launches=expert_launches,
            resident=cycled,
            row_intensity=expert_rate,
            op_class=expert_class,
        ),
        replace(
            elementwise("experts_act", gated_in * routed * a.d_ff_expert, routed * a.d_ff_expert, 5, moe_count, ab),
            launches=expert_launches,
        ),
        replace(
            linear("experts_down", routed, a.d_ff_expert, d, a.mlp_bias, moe_count, wb, ab, copies=touched),
            launches=expert_launches,
            resident=cycled,
            row_intensity=expert_rate,
            op_class=expert_class,
        ),
    ]


def stored_as(ops: list[Op], wb: float, real: dict[str, Any]) -> list[Op]:
    """The ops with their weights at the bytes per weight `real` gives by op name (a GGUF file's mix of types,
    arch/gguf_types.py), where it differs from the nominal `wb` they were counted at."""
    return [
        replace(
            op, weight_bytes=op.weight_bytes * (real[op.name] / wb), row_intensity=op.row_intensity * wb / real[op.name]
        )
        if op.name in real
        else op
        for op in ops
    ]


def total(ops: list[Op], attr: str, classes: tuple[str, ...] = OP_CLASSES) -> Any:
    """Sum of count · attr over the ops of the given classes."""
    return sum(op.count * getattr(op, attr) for op in ops if op.op_class in classes)
