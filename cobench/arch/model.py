"""The real torch module for any Architecture: the one model that export, profiling and training use.

Layout follows Llama/Qwen2/Mixtral (pre-norm, RoPE, q/k/v/o projections, gated or plain MLP, top-k
routed experts plus optional gated shared experts), so parameter counts match `param_counts` exactly
and matmul FLOPs match `operators`. The KV cache is passed in and returned as stacked tensors
(layers, batch, kv_heads, context, head_dim) so that a decode step exports as a plain ONNX graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from cobench.arch.architecture import Architecture


def _norm(a: Architecture) -> nn.Module:
    return nn.LayerNorm(a.d_model) if a.norm == "layernorm" else nn.RMSNorm(a.d_model, eps=1e-6)


def rope_tables(head_dim: int, max_len: int, theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos/sin tables (max_len, head_dim) for rotate-half RoPE, as in Llama."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x: (B, heads, T, hd); cos/sin: (T, hd)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, a: Architecture) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.hd = a.n_heads, a.n_kv_heads, a.head_dim
        self.q_proj = nn.Linear(a.d_model, a.n_heads * a.head_dim, bias=a.qkv_bias)
        self.k_proj = nn.Linear(a.d_model, a.n_kv_heads * a.head_dim, bias=a.qkv_bias)
        self.v_proj = nn.Linear(a.d_model, a.n_kv_heads * a.head_dim, bias=a.qkv_bias)
        self.o_proj = nn.Linear(a.n_heads * a.head_dim, a.d_model, bias=a.o_bias)

    def _qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.hd).transpose(1, 2)  # (B, h, T, hd)
        k = self.k_proj(x).view(b, t, self.n_kv, self.hd).transpose(1, 2)  # (B, kv, T, hd)
        v = self.v_proj(x).view(b, t, self.n_kv, self.hd).transpose(1, 2)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _out(self, y: Tensor) -> Tensor:
        b, _, t, _ = y.shape
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.n_heads * self.hd))

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, past_k: Tensor | None, past_v: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        t = x.shape[1]
        q, k, v = self._qkv(x, cos, sin)
        mask = None
        if past_k is not None and past_v is not None:  # new tokens see the whole cache and, causally, each other
            past = past_k.shape[2]
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)  # (B, kv, C+T, hd)
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(diagonal=past)
        group = self.n_heads // self.n_kv
        k_all = k.repeat_interleave(group, dim=1) if group > 1 else k
        v_all = v.repeat_interleave(group, dim=1) if group > 1 else v
        # (shape-independent branches, so that torch.export sees one graph per phase)
        y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, is_causal=mask is None)
        return self._out(y), k, v

    def cached(
        self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, positions: Tensor, visible: int | None
    ) -> Tensor:
        """Attention against a preallocated cache (B, kv, capacity, hd): the new keys and values are written
        at `positions` in place, then attention reads the first `visible` positions (a view, no copy), or,
        with visible None (CUDA graphs: one shape for every step), the whole capacity under a mask."""
        q, k, v = self._qkv(x, cos, sin)
        keys.index_copy_(2, positions, k)
        values.index_copy_(2, positions, v)
        if visible is not None:
            keys, values = keys[:, :, :visible], values[:, :, :visible]
        t, seen = x.shape[1], keys.shape[2]
        causal = visible is not None and visible == t  # a prompt into an empty cache
        mask = None
        if not causal and (t > 1 or visible is None):
            mask = positions[:, None] >= torch.arange(seen, device=x.device)[None, :]
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=causal, enable_gqa=True)
        return self._out(y)


class FeedForward(nn.Module):
    """SwiGLU (gate, up, down) or GELU MLP (up, down) of a given width: dense FFN, expert or shared expert."""

    def __init__(self, a: Architecture, width: int) -> None:
        super().__init__()
        self.gated = a.ffn == "swiglu"
        self.gate_proj = nn.Linear(a.d_model, width, bias=a.mlp_bias) if self.gated else None
        self.up_proj = nn.Linear(a.d_model, width, bias=a.mlp_bias)
        self.down_proj = nn.Linear(width, a.d_model, bias=a.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_proj is not None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.gelu(self.up_proj(x), approximate="tanh"))


class MoE(nn.Module):
    """Top-k routed experts (softmax over the selected logits, as Mixtral) plus optional shared experts.

    Each token is processed by exactly top_k experts, so the matmul FLOPs are n_tokens · k · expert.
    """

    def __init__(self, a: Architecture) -> None:
        super().__init__()
        assert a.d_ff_expert is not None
        self.top_k = a.top_k
        self.router = nn.Linear(a.d_model, a.n_experts, bias=False)
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
            inner = F.silu(project("gate_proj", h)) * project("up_proj", h)
        else:
            inner = F.gelu(project("up_proj", h), approximate="tanh")
        return (project("down_proj", inner) * weights[..., None]).sum(dim=1)


class Block(nn.Module):
    def __init__(self, a: Architecture) -> None:
        super().__init__()
        self.attn_norm, self.ffn_norm = _norm(a), _norm(a)
        self.attn = Attention(a)
        self.ffn: nn.Module = MoE(a) if a.is_moe else FeedForward(a, a.d_ff)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, past_k: Tensor | None, past_v: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        h, k, v = self.attn(self.attn_norm(x), cos, sin, past_k, past_v)
        x = x + h
        return x + self.ffn(self.ffn_norm(x)), k, v

    def cached(
        self, x: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor, positions: Tensor, visible: int | None
    ) -> Tensor:
        x = x + self.attn.cached(self.attn_norm(x), cos, sin, keys, values, positions, visible)
        if isinstance(self.ffn, MoE):  # the capturable step (visible=None) must not sync with the host
            return x + self.ffn(self.ffn_norm(x), capturable=visible is None)
        return x + self.ffn(self.ffn_norm(x))


class Transformer(nn.Module):
    """Decoder-only LM. forward(ids, past_k, past_v) → (logits, k_cache, v_cache).

    Logits convention: only the last position unless `all_logits` (training) — a generation engine
    needs only the last, and the roofline counts the LM head the same way.
    """

    def __init__(self, a: Architecture) -> None:
        super().__init__()
        self.arch = a
        self.embed = nn.Embedding(a.vocab_size, a.d_model)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.n_layers))
        self.norm = _norm(a)
        self.lm_head = nn.Linear(a.d_model, a.vocab_size, bias=False)
        if a.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        cos, sin = rope_tables(a.head_dim, a.max_seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

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
        x = self.embed(ids)
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            pk = None if past_k is None else past_k[i]
            pv = None if past_v is None else past_v[i]
            x, k, v = layer(x, cos, sin, pk, pv)
            ks.append(k)
            vs.append(v)
        x = self.norm(x if all_logits else x[:, -1:, :])
        return self.lm_head(x), torch.stack(ks), torch.stack(vs)

    def step(self, ids: Tensor, cache: StaticCache, positions: Tensor, visible: int | None) -> Tensor:
        """One engine step: ids (B, T) at `positions` (T,), written into the cache in place; last logits.

        visible = positions[-1] + 1 reads only the filled part; None reads the whole capacity under a mask,
        so that every step has the same shapes and a CUDA graph can replay it (positions updated in place).
        """
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            x = layer.cached(x, cos, sin, cache.keys[i], cache.values[i], positions, visible)
        return self.lm_head(self.norm(x[:, -1:, :]))


@dataclass
class StaticCache:
    """A KV cache preallocated for a whole generation, as engines keep it: (layers, B, kv_heads, capacity,
    head_dim) keys and values, and how many positions are filled. Steps write into it; nothing reallocates."""

    keys: Tensor
    values: Tensor
    length: int = 0

    @classmethod
    def allocate(cls, a: Architecture, batch: int, capacity: int, dtype: torch.dtype, device: str) -> StaticCache:
        shape = (a.n_layers, batch, a.n_kv_heads, capacity, a.head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    @property
    def capacity(self) -> int:
        return int(self.keys.shape[3])


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
    cos, sin = rope_tables(a.head_dim, a.max_seq_len)  # buffers are not parameters: to_empty left them empty
    model.rope_cos, model.rope_sin = cos, sin
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                std = 0.02 / math.sqrt(2 * a.n_layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                p.normal_(0.0, std, generator=generator)
    return model.to(dtype).eval()


def parameter_count(model: nn.Module) -> int:
    """Unique parameters (a tied LM head is counted once, as in the published totals)."""
    return sum(p.numel() for p in model.parameters())
