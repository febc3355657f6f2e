"""The real torch module for any Architecture: the one model that export, profiling and training use.

Layout follows Llama/Qwen2/Mixtral (RoPE, q/k/v/o projections, gated or plain MLP, top-k routed experts
plus optional gated shared experts), so parameter counts match `param_counts` exactly and matmul FLOPs
match `operators`. Every layer kind has a reference implementation: full and sliding-window attention
(QK-norm, sinks, soft-capping, output gate, partial or no RoPE), MLA (keys and values decompressed from
the latent), a recurrent gated delta-net and LFM2's short convolution; norms before, around or after each
sub-layer. The KV cache of the attention layers is passed in and returned as stacked tensors (layers,
batch, kv_heads, context, head_dim) so that a decode step exports as a plain ONNX graph; MLA, linear and
convolution layers keep other state, which only a prompt-only forward (training, prefill) runs here —
`uncached_kinds` says which layers a cached step cannot run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cobench.arch.architecture import Architecture

CACHED_KINDS = ("full", "sliding")  # the layers whose cache is K and V per position


def _norm(a: Architecture) -> nn.Module:
    return nn.LayerNorm(a.d_model) if a.norm == "layernorm" else nn.RMSNorm(a.d_model, eps=1e-6)


def _rms(width: int) -> nn.Module:
    """QK-norm and MLA's latent norms are RMSNorm in every family that has them, whatever the layers' norm."""
    return nn.RMSNorm(width, eps=1e-6)


def rotary_dim(a: Architecture) -> int:
    """Dims of each attention head that RoPE rotates (even; all of them unless partial_rotary_factor < 1)."""
    return max(2, int(a.head_dim * a.rope_fraction) // 2 * 2)


def rope_layers(a: Architecture) -> list[bool]:
    """Which layers apply RoPE: all attention layers but `no_rope_layers` of them, spread evenly (SmolLM3's
    every fourth)."""
    attention = [i for i, k in enumerate(a.kinds) if k in CACHED_KINDS]
    skip = {attention[(j + 1) * len(attention) // a.no_rope_layers - 1] for j in range(a.no_rope_layers)}
    return [i not in skip for i in range(a.n_layers)]


def rope_tables(head_dim: int, max_len: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos/sin tables (max_len, head_dim) for rotate-half RoPE, as in Llama."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: (B, heads, T, hd); cos/sin: (T, rotated dims). Partial RoPE rotates the first dims only."""
    rot = cos.shape[-1]
    if rot < x.shape[-1]:
        return torch.cat([apply_rope(x[..., :rot], cos, sin), x[..., rot:]], dim=-1)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float, softcap: float, sinks: Tensor | None) -> Tensor:
    """Attention written out, for what scaled_dot_product_attention has no argument for: soft-capped logits
    (Gemma 2) and a learned sink logit per head that takes probability mass but has no value (gpt-oss)."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = (q @ k.transpose(-1, -2)) * scale
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    scores = scores.masked_fill(~mask, float("-inf"))
    if sinks is not None:
        sink = sinks.view(1, -1, 1, 1).expand(scores.shape[0], -1, scores.shape[2], 1)
        probs = torch.cat([scores, sink], dim=-1).softmax(dim=-1)[..., :-1]
    else:
        probs = scores.softmax(dim=-1)
    return probs @ v


class Attention(nn.Module):
    """Full or sliding-window attention (GQA/MQA), with the variants families add."""

    def __init__(self, a: Architecture, kind: str = "full", rope: bool = True) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.hd = a.n_heads, a.n_kv_heads, a.head_dim
        self.gated = a.attn_output_gate
        self.q_proj = nn.Linear(a.d_model, a.n_heads * a.head_dim * (1 + self.gated), bias=a.qkv_bias)
        self.k_proj = nn.Linear(a.d_model, a.n_kv_heads * a.head_dim, bias=a.qkv_bias)
        self.v_proj = nn.Linear(a.d_model, a.n_kv_heads * a.head_dim, bias=a.qkv_bias)
        self.o_proj = nn.Linear(a.n_heads * a.head_dim, a.d_model, bias=a.o_bias)
        self.qk_norm = a.qk_norm
        if a.qk_norm != "none":
            per_head = a.qk_norm == "head"
            self.q_norm = _rms(a.head_dim if per_head else a.n_heads * a.head_dim)
            self.k_norm = _rms(a.head_dim if per_head else a.n_kv_heads * a.head_dim)
        self.sinks = nn.Parameter(torch.zeros(a.n_heads)) if a.attention_sinks else None
        self.window = a.sliding_window if kind == "sliding" else None
        self.rope = rope
        self.softcap = a.attn_softcap
        self.scale = a.attention_multiplier or 1.0 / math.sqrt(a.head_dim)
        # written out (mask by positions) where scaled_dot_product_attention's causal flag cannot say it
        self.explicit = self.window is not None or self.sinks is not None or bool(self.softcap)

    def _qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        b, t, _ = x.shape
        q, gate = self.q_proj(x), None
        if self.gated:  # per head: the query, then its gate
            q, gate = q.view(b, t, self.n_heads, 2 * self.hd).chunk(2, dim=-1)
        k, v = self.k_proj(x), self.v_proj(x)
        if self.qk_norm == "proj":
            q, k = self.q_norm(q.reshape(b, t, -1)), self.k_norm(k)
        q = q.reshape(b, t, self.n_heads, self.hd)
        k = k.view(b, t, self.n_kv, self.hd)
        if self.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, h, T, hd), (B, kv, T, hd)
        v = v.view(b, t, self.n_kv, self.hd).transpose(1, 2)
        if self.rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v, gate

    def _out(self, y: Tensor, gate: Tensor | None) -> Tensor:
        b, _, t, _ = y.shape
        y = y.transpose(1, 2)
        if gate is not None:
            y = y * torch.sigmoid(gate)
        return self.o_proj(y.reshape(b, t, self.n_heads * self.hd))

    def _mask(self, q_pos: Tensor, k_pos: Tensor) -> Tensor:
        """Which keys each query sees: causal, and within the window for a sliding layer."""
        seen = q_pos[:, None] >= k_pos[None, :]
        if self.window is not None:
            seen &= q_pos[:, None] - k_pos[None, :] < self.window
        return seen

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, past_k: Tensor | None, past_v: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        t = x.shape[1]
        q, k, v, gate = self._qkv(x, cos, sin)
        mask = None
        past = 0
        if past_k is not None and past_v is not None:  # new tokens see the whole cache and, causally, each other
            past = past_k.shape[2]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # (B, kv, C+T, hd)
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
        if self.explicit:
            positions = torch.arange(past + t, device=x.device)
            y = attend(q, k, v, self._mask(positions[past:], positions), self.scale, self.softcap, self.sinks)
            return self._out(y, gate), k, v
        group = self.n_heads // self.n_kv
        k_all = k.repeat_interleave(group, dim=1) if group > 1 else k
        v_all = v.repeat_interleave(group, dim=1) if group > 1 else v
        # (shape-independent branches, so that torch.export sees one graph per phase)
        y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, is_causal=mask is None, scale=self.scale)
        return self._out(y, gate), k, v

    def cached(
        self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, positions: Tensor, visible: int | None
    ) -> Tensor:
        """Attention against a preallocated cache (B, kv, capacity, hd): the new keys and values are written
        at `positions` in place, then attention reads the first `visible` positions (a view, no copy), or,
        with visible None (CUDA graphs: one shape for every step), the whole capacity under a mask."""
        q, k, v, gate = self._qkv(x, cos, sin)
        keys.index_copy_(2, positions, k)
        values.index_copy_(2, positions, v)
        if visible is not None:
            keys, values = keys[:, :, :visible], values[:, :, :visible]
        t, seen = x.shape[1], keys.shape[2]
        if self.explicit:  # a window is a mask here, as in ORT's GroupQueryAttention (Counting.window_skip)
            k_pos = torch.arange(seen, device=x.device)
            y = attend(q, keys, values, self._mask(positions, k_pos), self.scale, self.softcap, self.sinks)
            return self._out(y, gate)
        causal = visible is not None and visible == t  # a prompt into an empty cache
        mask = None
        if not causal and (t > 1 or visible is None):
            mask = positions[:, None] >= torch.arange(seen, device=x.device)[None, :]
        y = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, is_causal=causal, enable_gqa=True, scale=self.scale
        )
        return self._out(y, gate)


class LatentAttention(nn.Module):
    """MLA (DeepSeek-V2/V3), the reference way: the query through its low-rank pair (or one projection),
    a shared down-projection to the latent and one RoPE key, keys and values decompressed per head."""

    def __init__(self, a: Architecture) -> None:
        super().__init__()
        self.h, self.nope, self.rope_dim, self.v_dim = a.n_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim
        self.rank = a.kv_lora_rank
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            self.q_a_proj = nn.Linear(a.d_model, a.q_lora_rank, bias=a.qkv_bias)
            self.q_a_norm = _rms(a.q_lora_rank)
            self.q_b_proj = nn.Linear(a.q_lora_rank, a.n_heads * qk, bias=False)
        else:
            self.q_proj = nn.Linear(a.d_model, a.n_heads * qk, bias=False)
        self.kv_a_proj = nn.Linear(a.d_model, a.kv_lora_rank + a.qk_rope_head_dim, bias=a.qkv_bias)
        self.kv_a_norm = _rms(a.kv_lora_rank)
        self.kv_b_proj = nn.Linear(a.kv_lora_rank, a.n_heads * (a.qk_nope_head_dim + a.v_head_dim), bias=False)
        self.o_proj = nn.Linear(a.n_heads * a.v_head_dim, a.d_model, bias=a.o_bias)
        self.scale = a.attention_multiplier or 1.0 / math.sqrt(qk)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, _ = x.shape
        q = self.q_b_proj(self.q_a_norm(self.q_a_proj(x))) if hasattr(self, "q_b_proj") else self.q_proj(x)
        q = q.view(b, t, self.h, -1).transpose(1, 2)
        q_nope, q_rope = q.split([self.nope, self.rope_dim], dim=-1)
        latent, k_rope = self.kv_a_proj(x).split([self.rank, self.rope_dim], dim=-1)
        kv = self.kv_b_proj(self.kv_a_norm(latent)).view(b, t, self.h, -1).transpose(1, 2)
        k_nope, v = kv.split([self.nope, self.v_dim], dim=-1)
        k_rope = apply_rope(k_rope[:, None], cos, sin).expand(-1, self.h, -1, -1)
        q = torch.cat([q_nope, apply_rope(q_rope, cos, sin)], dim=-1)
        k = torch.cat([k_nope, k_rope], dim=-1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.h * self.v_dim))

    def cached(
        self, x: Tensor, cos: Tensor, sin: Tensor, latents: Tensor, positions: Tensor, visible: int | None
    ) -> Tensor:
        """Against a preallocated latent cache (B, capacity, kv_lora_rank + rope dims), as serving engines run
        MLA: the new tokens' normed latent and RoPE key written at `positions`; a prompt into an empty cache
        then runs as `forward` (keys and values decompressed), a step against a cache absorbs the
        up-projection into the query and the output and attends over the latent itself."""
        b, t, _ = x.shape
        latent, k_rope = self.kv_a_proj(x).split([self.rank, self.rope_dim], dim=-1)
        written = torch.cat([self.kv_a_norm(latent), apply_rope(k_rope[:, None], cos, sin)[:, 0]], dim=-1)
        latents.index_copy_(1, positions, written)
        if visible is not None and visible == t:
            return self.forward(x, cos, sin)
        seen = latents[:, :visible] if visible is not None else latents
        c, k_rope = seen.split([self.rank, self.rope_dim], dim=-1)  # (B, S, rank), (B, S, rope)
        q = self.q_b_proj(self.q_a_norm(self.q_a_proj(x))) if hasattr(self, "q_b_proj") else self.q_proj(x)
        q_nope, q_rope = q.view(b, t, self.h, -1).transpose(1, 2).split([self.nope, self.rope_dim], dim=-1)
        w_uk, w_uv = self.kv_b_proj.weight.view(self.h, self.nope + self.v_dim, self.rank).split(
            [self.nope, self.v_dim], 1
        )
        scores = torch.einsum("bhtn,hnr,bsr->bhts", q_nope, w_uk, c)
        scores = (scores + torch.einsum("bhtp,bsp->bhts", apply_rope(q_rope, cos, sin), k_rope)) * self.scale
        mask = positions[:, None] >= torch.arange(seen.shape[1], device=x.device)[None, :]
        probs = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = torch.einsum("bhts,bsr,hvr->bhtv", probs, c, w_uv)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.h * self.v_dim))


def causal_conv(x: Tensor, conv: nn.Conv1d, state: Tensor | None = None) -> Tensor:
    """Depthwise causal convolution over time: x (B, channels, T), padded on the left with zeros or, in a
    generation, with the last kernel − 1 inputs kept in `state` (B, channels, kernel − 1), updated in place."""
    if state is None:
        return conv(F.pad(x, (conv.kernel_size[0] - 1, 0)))
    full = torch.cat([state, x], dim=-1)
    if state.shape[-1]:
        state.copy_(full[..., -state.shape[-1] :])
    return conv(full)


class GatedDeltaNet(nn.Module):
    """Gated delta-net linear attention (Qwen3-Next), recurrent reference form: per value head a key × value
    state, decayed by exp(g) and corrected by the delta rule with strength β each token; a causal conv over
    q, k and v first, a norm gated by z last. Its state does not grow with the context."""

    def __init__(self, a: Architecture) -> None:
        super().__init__()
        self.hk, self.hv, self.dk, self.dv = (
            a.linear_key_heads,
            a.linear_value_heads,
            a.linear_key_dim,
            a.linear_value_dim,
        )
        key, value = self.hk * self.dk, self.hv * self.dv
        self.widths = [key, key, value, value]
        self.in_proj_qkvz = nn.Linear(a.d_model, 2 * key + 2 * value, bias=False)
        self.in_proj_ba = nn.Linear(a.d_model, 2 * self.hv, bias=False)
        self.conv1d = nn.Conv1d(
            2 * key + value, 2 * key + value, a.linear_conv_kernel, groups=2 * key + value, bias=False
        )
        self.dt_bias = nn.Parameter(torch.ones(self.hv))
        self.A_log = nn.Parameter(torch.zeros(self.hv))
        self.norm = _rms(self.dv)
        self.out_proj = nn.Linear(value, a.d_model, bias=False)

    def forward(self, x: Tensor, state: dict[str, Tensor] | None = None) -> Tensor:
        """A prompt from a zero state, or (with `state`: "state" (B, Hv, dk, dv) and "conv" (B, 2·key + value,
        kernel − 1)) the next tokens of a generation, the state updated in place."""
        b, t, _ = x.shape
        q, k, v, z = self.in_proj_qkvz(x).split(self.widths, dim=-1)
        beta, alpha = self.in_proj_ba(x).chunk(2, dim=-1)
        mixed = torch.cat([q, k, v], dim=-1).transpose(1, 2)
        mixed = F.silu(causal_conv(mixed, self.conv1d, None if state is None else state["conv"])).transpose(1, 2)
        q, k, v = mixed.split(self.widths[:3], dim=-1)
        group = self.hv // self.hk
        q = F.normalize(q.view(b, t, self.hk, self.dk), dim=-1).repeat_interleave(group, dim=2) / math.sqrt(self.dk)
        k = F.normalize(k.view(b, t, self.hk, self.dk), dim=-1).repeat_interleave(group, dim=2)
        v = v.view(b, t, self.hv, self.dv)
        beta = torch.sigmoid(beta)
        decay = torch.exp(-self.A_log.exp() * F.softplus(alpha + self.dt_bias))  # (B, T, Hv)
        s = x.new_zeros(b, self.hv, self.dk, self.dv) if state is None else state["state"]
        outs = []
        for i in range(t):
            s = s * decay[:, i, :, None, None]
            delta = (v[:, i] - torch.einsum("bhk,bhkv->bhv", k[:, i], s)) * beta[:, i, :, None]
            s = s + torch.einsum("bhk,bhv->bhkv", k[:, i], delta)
            outs.append(torch.einsum("bhk,bhkv->bhv", q[:, i], s))
        if state is not None:
            state["state"].copy_(s)
        y = self.norm(torch.stack(outs, dim=1)) * F.silu(z.view(b, t, self.hv, self.dv))
        return self.out_proj(y.reshape(b, t, -1))

    def new_state(self, batch: int, dtype: torch.dtype, device: str) -> dict[str, Tensor]:
        conv = self.conv1d
        return {
            "state": torch.zeros(batch, self.hv, self.dk, self.dv, dtype=dtype, device=device),
            "conv": torch.zeros(batch, conv.in_channels, conv.kernel_size[0] - 1, dtype=dtype, device=device),
        }


class ShortConv(nn.Module):
    """LFM2's gated short convolution: in_proj to (B, C, x), B·x through a depthwise causal conv, gated by C."""

    def __init__(self, a: Architecture) -> None:
        super().__init__()
        d = a.d_model
        self.in_proj = nn.Linear(d, 3 * d, bias=a.conv_bias)
        self.conv = nn.Conv1d(d, d, a.conv_kernel, groups=d, bias=a.conv_bias)
        self.out_proj = nn.Linear(d, d, bias=a.conv_bias)

    def forward(self, x: Tensor, state: Tensor | None = None) -> Tensor:
        """A prompt from zeros, or with `state` (B, d, kernel − 1) the next tokens, the state updated in place."""
        gate_b, gate_c, h = self.in_proj(x).transpose(1, 2).chunk(3, dim=1)
        y = gate_c * causal_conv(gate_b * h, self.conv, state)
        return self.out_proj(y.transpose(1, 2))

    def new_state(self, batch: int, dtype: torch.dtype, device: str) -> Tensor:
        return torch.zeros(batch, self.conv.in_channels, self.conv.kernel_size[0] - 1, dtype=dtype, device=device)


class FeedForward(nn.Module):
    """SwiGLU or GeGLU (gate, up, down) or GELU MLP (up, down) of a given width: dense FFN, expert or shared expert."""

    def __init__(self, a: Architecture, width: int) -> None:
        super().__init__()
        self.gated = a.ffn in ("swiglu", "geglu")
        self.geglu = a.ffn == "geglu"
        self.gate_proj = nn.Linear(a.d_model, width, bias=a.mlp_bias) if self.gated else None
        self.up_proj = nn.Linear(a.d_model, width, bias=a.mlp_bias)
        self.down_proj = nn.Linear(width, a.d_model, bias=a.mlp_bias)

    def act(self, h: Tensor) -> Tensor:
        return F.gelu(h, approximate="tanh") if self.geglu else F.silu(h)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_proj is not None:
            return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))


class MoE(nn.Module):
    """Top-k routed experts (softmax over the selected logits, as Mixtral) plus optional shared experts.

    Each token is processed by exactly top_k experts, so the matmul FLOPs are n_tokens · k · expert.
    """

    def __init__(self, a: Architecture) -> None:
        super().__init__()
        assert a.d_ff_expert is not None
        self.top_k = a.top_k
        self.router = nn.Linear(a.d_model, a.n_experts, bias=a.router_bias)
        self.experts = nn.ModuleList(FeedForward(a, a.d_ff_expert) for _ in range(a.n_experts))
        width = a.d_ff_shared or 0
        self.shared = nn.ModuleList(FeedForward(a, width) for _ in range(a.n_shared_experts))
        self.shared_gate = nn.Linear(a.d_model, 1, bias=False) if a.shared_expert_gate else None
        self._stack: dict[str, tuple[Tensor, Tensor | None]] | None = None

    def forward(self, x: Tensor, capturable: bool = False) -> Tensor:
        """capturable: gather each token's k experts' weights by index instead of selecting each expert's
        tokens (torch.where, whose data-dependent size syncs with the host and so cannot be captured in a
        CUDA graph). Same result and same expert weights read, for the few tokens of a decode step."""
        b, t, d = x.shape
        flat = x.reshape(b * t, d)
        weights, chosen = torch.topk(self.router(flat), self.top_k, dim=-1)  # (N, k)
        weights = weights.softmax(dim=-1)
        if capturable:
            out = self._gathered(flat, chosen, weights)
        else:
            out = torch.zeros_like(flat)
            for e, expert in enumerate(self.experts):
                token, slot = torch.where(chosen == e)
                out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        if len(self.shared):
            shared = sum(s(flat) for s in self.shared)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(flat)) * shared
            out = out + shared
        return out.view(b, t, d)

    def _stacked(self) -> dict[str, tuple[Tensor, Tensor | None]]:
        """Every expert's (weight, bias) per projection as one tensor, built once (outside any capture)."""
        if self._stack is None:
            names = ("gate_proj", "up_proj", "down_proj") if self.experts[0].gated else ("up_proj", "down_proj")
            stack = {}
            for name in names:
                layers = [getattr(e, name) for e in self.experts]
                bias = torch.stack([m.bias for m in layers]).detach() if layers[0].bias is not None else None
                stack[name] = (torch.stack([m.weight for m in layers]).detach(), bias)
            self._stack = stack
        return self._stack

    def _gathered(self, flat: Tensor, chosen: Tensor, weights: Tensor) -> Tensor:
        stack = self._stacked()

        def project(name: str, h: Tensor) -> Tensor:  # h (N, k, in) through each token's chosen experts
            w, bias = stack[name]
            y = torch.einsum("nki,nkoi->nko", h, w[chosen])
            return y if bias is None else y + bias[chosen]

        h = flat[:, None, :].expand(-1, self.top_k, -1)
        if "gate_proj" in stack:
            inner = self.experts[0].act(project("gate_proj", h)) * project("up_proj", h)
        else:
            inner = F.gelu(project("up_proj", h), approximate="tanh")
        return (project("down_proj", inner) * weights[..., None]).sum(dim=1)


class Block(nn.Module):
    """One decoder layer: its token mixer and FFN, normed before (Llama), before and after (Gemma) or after
    (OLMo 2) each, each output scaled by the residual multiplier (Granite) before the residual add."""

    def __init__(self, a: Architecture, i: int = 0) -> None:
        super().__init__()
        self.kind, self.layout, self.scale = a.kinds[i], a.norm_layout, a.residual_multiplier
        self.attn_norm, self.ffn_norm = _norm(a), _norm(a)
        if self.layout == "sandwich":
            self.attn_post_norm, self.ffn_post_norm = _norm(a), _norm(a)
        mixers = {"mla": LatentAttention, "linear": GatedDeltaNet, "conv": ShortConv}
        self.attn: nn.Module = (
            Attention(a, self.kind, rope_layers(a)[i]) if self.kind in CACHED_KINDS else mixers[self.kind](a)
        )
        self.ffn: nn.Module = FeedForward(a, a.d_ff) if a.dense_layer(i) else MoE(a)

    def _residual(self, x: Tensor, sublayer: Any, pre: nn.Module, post: nn.Module | None) -> Tensor:
        if self.layout == "post":
            return x + self.scale * pre(sublayer(x))
        h = sublayer(pre(x))
        return x + self.scale * (post(h) if post is not None else h)

    def _post(self, which: str) -> nn.Module | None:
        return getattr(self, which) if self.layout == "sandwich" else None

    def mix(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """The token mixer without a cache (a prompt, training)."""
        if self.kind in CACHED_KINDS:
            return self.attn(x, cos, sin, None, None)[0]
        return self.attn(x, cos, sin) if self.kind == "mla" else self.attn(x)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, past_k: Tensor | None, past_v: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        kv: list[Tensor] = []

        def attention(h: Tensor) -> Tensor:
            y, k, v = self.attn(h, cos, sin, past_k, past_v)
            kv.extend([k, v])
            return y

        x = self._residual(x, attention, self.attn_norm, self._post("attn_post_norm"))
        return self._ffn(x, False), kv[0], kv[1]

    def _ffn(self, x: Tensor, capturable: bool) -> Tensor:
        if isinstance(self.ffn, MoE):  # the capturable step (visible=None) must not sync with the host
            return self._residual(x, lambda h: self.ffn(h, capturable=capturable), self.ffn_norm,
                                  self._post("ffn_post_norm"))  # fmt: skip
        return self._residual(x, self.ffn, self.ffn_norm, self._post("ffn_post_norm"))

    def plain(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        x = self._residual(x, lambda h: self.mix(h, cos, sin), self.attn_norm, self._post("attn_post_norm"))
        return self._ffn(x, False)

    def cached(self, x: Tensor, rope: dict[str, tuple[Tensor, Tensor]], state: Any, positions: Tensor,
               visible: int | None) -> Tensor:  # fmt: skip
        """One engine step of this layer on its slice of the StaticCache (StaticCache.layer)."""
        if self.kind in CACHED_KINDS:
            mix = lambda h: self.attn.cached(h, *rope["gqa"], *state, positions, visible)  # noqa: E731
        elif self.kind == "mla":
            mix = lambda h: self.attn.cached(h, *rope["mla"], state, positions, visible)  # noqa: E731
        else:
            mix = lambda h: self.attn(h, state)  # noqa: E731
        x = self._residual(x, mix, self.attn_norm, self._post("attn_post_norm"))
        return self._ffn(x, visible is None)


class Transformer(nn.Module):
    """Decoder-only LM. forward(ids, past_k, past_v) → (logits, k_cache, v_cache).

    Logits convention: only the last position unless `all_logits` (training) — a generation engine
    needs only the last, and the roofline counts the LM head the same way. The caches stack the K and V
    of the attention layers; MLA, linear and convolution layers run only without a cache (`past_k` None).
    """

    def __init__(self, a: Architecture) -> None:
        super().__init__()
        self.arch = a
        self.embed = nn.Embedding(a.vocab_size, a.d_model)
        self.layers = nn.ModuleList(Block(a, i) for i in range(a.n_layers))
        self.norm = _norm(a)
        self.lm_head = nn.Linear(a.d_model, a.vocab_size, bias=False)
        if a.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.reset_rope()

    def reset_rope(self) -> None:
        """(Re)compute the RoPE tables: buffers, not parameters, so build_model's to_empty leaves them empty."""
        a = self.arch
        cos, sin = rope_tables(rotary_dim(a), a.max_seq_len, a.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if a.qk_rope_head_dim:
            cos, sin = rope_tables(a.qk_rope_head_dim, a.max_seq_len, a.rope_theta)
            self.register_buffer("mla_cos", cos, persistent=False)
            self.register_buffer("mla_sin", sin, persistent=False)

    def _embed(self, ids: Tensor) -> Tensor:
        x = self.embed(ids)
        return x * self.arch.embedding_multiplier if self.arch.embedding_multiplier != 1.0 else x

    def _logits(self, x: Tensor) -> Tensor:
        a = self.arch
        logits = self.lm_head(self.norm(x))
        if a.logits_scaling != 1.0:
            logits = logits / a.logits_scaling
        if a.final_softcap:
            logits = a.final_softcap * torch.tanh(logits / a.final_softcap)
        return logits

    def forward(
        self,
        ids: Tensor,
        past_k: Tensor | None = None,
        past_v: Tensor | None = None,
        all_logits: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor]:
        t = ids.shape[1]
        start = 0 if past_k is None else past_k.shape[3]
        cos, sin = self.rope_cos[start : start + t], self.rope_sin[start : start + t]
        x = self._embed(ids)
        ks, vs = [], []
        for layer in self.layers:
            if layer.kind not in CACHED_KINDS:
                if past_k is not None:
                    raise ValueError(f"a {layer.kind} layer keeps no K/V cache: run it without one")
                x = (
                    layer.plain(x, self.mla_cos[:t], self.mla_sin[:t])
                    if layer.kind == "mla"
                    else layer.plain(x, cos, sin)
                )
                continue
            pk = None if past_k is None else past_k[len(ks)]
            pv = None if past_v is None else past_v[len(vs)]
            x, k, v = layer(x, cos, sin, pk, pv)
            ks.append(k)
            vs.append(v)
        empty = x.new_zeros(0)
        logits = self._logits(x if all_logits else x[:, -1:, :])
        return logits, torch.stack(ks) if ks else empty, torch.stack(vs) if vs else empty

    def step(self, ids: Tensor, cache: StaticCache, positions: Tensor, visible: int | None) -> Tensor:
        """One engine step: ids (B, T) at `positions` (T,), written into the cache in place; last logits.

        visible = positions[-1] + 1 reads only the filled part; None reads the whole capacity under a mask,
        so that every step has the same shapes and a CUDA graph can replay it (positions updated in place).
        """
        rope = {"gqa": (self.rope_cos[positions], self.rope_sin[positions])}
        if self.arch.qk_rope_head_dim:
            rope["mla"] = (self.mla_cos[positions], self.mla_sin[positions])
        x = self._embed(ids)
        for i, layer in enumerate(self.layers):
            x = layer.cached(x, rope, cache.layer(i), positions, visible)
        return self._logits(x[:, -1:, :])


def uncached_kinds(a: Architecture) -> list[str]:
    """The layer kinds of `a` whose state the exported graphs' stacked past/present K/V cannot hold (MLA,
    linear and convolution layers; StaticCache holds every kind)."""
    return sorted({k for k in a.kinds if k not in CACHED_KINDS})


@dataclass
class StaticCache:
    """What a generation keeps, preallocated for all of it as engines keep it: the K and V of the attention
    layers, (attention layers, B, kv_heads, capacity, head_dim); per MLA layer its latent cache (B, capacity,
    kv_lora_rank + rope dims); per linear or convolution layer its fixed-size state; and how many positions
    are filled. Steps write into it; nothing reallocates."""

    keys: Tensor
    values: Tensor
    states: list[Any]  # per layer: None where its K/V are in keys/values, else its own state
    slots: list[int]  # per layer: its index into keys/values, or −1
    capacity: int
    length: int = 0

    @classmethod
    def allocate(
        cls, a: Architecture, batch: int, capacity: int, dtype: torch.dtype, device: str, model: Any = None
    ) -> StaticCache:
        """`model` (the Transformer) sizes the linear and convolution states; without it a model of `a` is laid
        out on the meta device for them."""
        slots, states = [], []
        mixers = None
        for i, kind in enumerate(a.kinds):
            slots.append(sum(s >= 0 for s in slots) if kind in CACHED_KINDS else -1)
            if kind in CACHED_KINDS:
                states.append(None)
            elif kind == "mla":
                width = a.kv_lora_rank + a.qk_rope_head_dim
                states.append(torch.zeros(batch, capacity, width, dtype=dtype, device=device))
            else:
                if mixers is None:
                    if model is None:
                        with torch.device("meta"):
                            model = Transformer(a)
                    mixers = [layer.attn for layer in model.layers]
                states.append(mixers[i].new_state(batch, dtype, device))
        shape = (sum(s >= 0 for s in slots), batch, a.n_kv_heads, capacity, a.head_dim)
        keys, values = (torch.zeros(shape, dtype=dtype, device=device) for _ in range(2))
        return cls(keys, values, states, slots, capacity)

    def layer(self, i: int) -> Any:
        """Layer i's part: (keys, values) of an attention layer, else its own state."""
        return (self.keys[self.slots[i]], self.values[self.slots[i]]) if self.slots[i] >= 0 else self.states[i]

    def tensors(self) -> list[Tensor]:
        """Every buffer of the cache (to fill a fixed-context cache with data)."""
        found = [self.keys, self.values]
        for s in self.states:
            found += [] if s is None else list(s.values()) if isinstance(s, dict) else [s]
        return found


def build_model(a: Architecture, seed: int = 0, dtype: torch.dtype = torch.float32) -> Transformer:
    """Random weights from a seed (GPT-2 style init, 0.02 std, scaled residual outputs).

    The module is laid out on the meta device and each parameter drawn once in place: torch's own
    default initialisation, overwritten anyway, took half of a 0.5 B model's export."""
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = Transformer(a)
    model.to_empty(device="cpu")
    if a.tie_embeddings:  # to_empty gives every parameter its own storage
        model.lm_head.weight = model.embed.weight
    model.reset_rope()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if name.endswith(("weight", "dt_bias")) else 0.0)
            else:
                std = 0.02 / math.sqrt(2 * a.n_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                p.normal_(0.0, std, generator=generator)
    return model.to(dtype).eval()


def parameter_count(model: nn.Module) -> int:
    """Unique parameters (a tied LM head is counted once, as in the published totals)."""
    return sum(p.numel() for p in model.parameters())
