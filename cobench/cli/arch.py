"""`cobench arch show|list`: what an architecture is, counted exactly."""

from __future__ import annotations

from typing import Annotated

import typer

from cobench.arch.architecture import param_counts
from cobench.arch.precision import PRECISIONS
from cobench.arch.spec import load_architecture, presets
from cobench.arch.summary import arch_summary
from cobench.cli.app import app, handles_errors, typer_app
from cobench.cli.options import JsonOpt
from cobench.cli.render import emit_json, kv_table, out, table
from cobench.report.format import si

arch_app = typer_app("Architectures: presets, cobench YAML/JSON files, Hugging Face config.json.")
app.add_typer(arch_app, name="arch")


@arch_app.command("show")
@handles_errors
def arch_show(
    spec: Annotated[str, typer.Argument(help="Preset name, cobench architecture YAML/JSON, or HF config.json.")],
    prompt: Annotated[int, typer.Option("--prompt", "-p", help="Context (tokens) for the per-token FLOPs.")] = 1024,
    context: Annotated[
        int | None,
        typer.Option(
            "--context", "-c", min=1, help="Context (tokens) for the cache and peak memory [default: --prompt]."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Parameters, layer kinds, cache and weight bytes, FLOPs per token and the per-layer operator list."""
    a = load_architecture(spec)
    s = arch_summary(a, prompt, context)
    if json_out:
        return emit_json(s)
    p = s["params"]
    published = ""
    if s["published_total"]:
        mark = "[green]matches[/green]" if s["matches_published"] else "[red]DIFFERS[/red]"
        published = f" — published {s['published_total']:,}: {mark}"
    out.print(f"[bold]{a.name}[/bold]  total {p['total']:,} params{published}")
    fields_ = [(k, v) for k, v in a.to_dict().items() if k not in ("name", "layer_types") and v not in (None, 0, False)]
    if a.layer_types is not None:
        fields_.append(("layers", ", ".join(f"{n} {k}" for k, n in s["layer_kinds"].items())))
    out.print(kv_table("architecture", fields_))
    out.print(
        kv_table(
            "parameters",
            [
                ("total", f"{p['total']:,}"),
                ("non-embedding", f"{p['non_embedding']:,}"),
                ("active per token", f"{p['active']:,}"),
                ("embedding (+ untied head)", f"{p['embedding']:,}"),
            ],
        )
    )
    out.print(
        table(
            "memory",
            ["type", "weights", "KV cache / token"],
            [
                [
                    k,
                    si(s["weight_bytes"][k], "B") if k in s["weight_bytes"] else "—",
                    si(s["kv_cache_bytes_per_token"][k], "B") if k in s["kv_cache_bytes_per_token"] else "—",
                ]
                for k in PRECISIONS
            ],
            right={1, 2},
        )
    )
    c = s["cache_at_context"]
    out.print(
        table(
            f"at context {c['context']:,} (one sequence): cache and state by layer kind, peak memory",
            ["type", "cache + state", "peak memory"],
            [
                [k, si(c["bytes"][k], "B") if k in c["bytes"] else "—", si(s["peak_memory_bytes_at_context"][k], "B")]
                for k in PRECISIONS
            ],
            right={1, 2},
        )
    )
    kinds = ", ".join(f"{k} {si(v)} elements" for k, v in c["elements_by_kind"].items())
    out.print(f"cache at {c['context']:,} tokens by kind: {kinds or 'none'}")
    f = s["flops_per_token"]
    out.print(
        f"FLOPs per token: prefill {si(f['prefill'], 'FLOP')} (mean over {prompt} tokens), "
        f"decode {si(f['decode'], 'FLOP')} (at context {prompt}); 2 FLOPs per multiply-add, causal attention halved"
    )
    out.print(
        table(
            "operators (per occurrence; count = occurrences per forward; prefill of the whole prompt, one decode step)",
            ["op", "class", "count", "prefill FLOPs", "decode FLOPs", "decode weight reads (fp16)"],
            [
                [
                    o["name"],
                    o["class"],
                    o["count"],
                    si(o["prefill_flops"]),
                    si(o["decode_flops"]),
                    si(o["decode_weight_bytes_fp16"], "B"),
                ]
                for o in s["operators"]
            ],
            right={2, 3, 4, 5},
        )
    )
    return None


@arch_app.command("list")
@handles_errors
def arch_list(json_out: JsonOpt = False) -> None:
    """The presets, with their counts checked against the published totals."""
    rows = []
    for name, p in sorted(presets().items()):
        c = param_counts(p.arch)
        rows.append(
            {
                "name": name,
                "total": c.total,
                "active": c.active,
                "published_total": p.published_total,
                "matches_published": p.published_total == c.total if p.published_total else None,
                "d_model": p.arch.d_model,
                "n_layers": p.arch.n_layers,
                "n_heads": p.arch.n_heads,
                "n_kv_heads": p.arch.n_kv_heads,
                "n_experts": p.arch.n_experts,
                "source": p.source,
            }
        )
    if json_out:
        return emit_json(rows)
    out.print(
        table(
            "presets",
            ["name", "params", "active", "published", "d_model", "layers", "heads/kv", "experts"],
            [
                [
                    r["name"],
                    si(r["total"]),
                    si(r["active"]),
                    ("✓ " if r["matches_published"] else "✗ ") + f"{r['published_total']:,}"
                    if r["published_total"]
                    else "—",
                    r["d_model"],
                    r["n_layers"],
                    f"{r['n_heads']}/{r['n_kv_heads']}",
                    r["n_experts"] or "—",
                ]
                for r in rows
            ],
            right={1, 2, 3, 4, 5},
        )
    )
    return None
