"""Training runs: deterministic default corpus, resume reproduces the uninterrupted loss curve, CLI queue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from test_cli import run, run_json

from cobench.arch.architecture import Architecture
from cobench.fit.corpus import load_corpus
from cobench.fit.train import TrainConfig, train

TINY = Architecture(
    name="tiny-train", vocab_size=256, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, max_seq_len=64
)
TEXT = ("The quick brown fox jumps over the lazy dog. " * 40 + "Pack my box with five dozen liquor jugs. " * 40) * 4


def test_default_corpus_is_deterministic_and_offline() -> None:
    a, b = load_corpus(budget=200_000), load_corpus(budget=200_000)
    assert a.sha256 == b.sha256 and a.vocab_size == 256
    assert len(a.train) + len(a.val) == 200_000 and len(a.val) > 0
    assert a.bytes_per_token == 1.0 and "python-stdlib" in a.source


def test_resumed_run_gives_the_same_loss_curve(tmp_path: Path) -> None:
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    corpus = load_corpus(data)
    cfg = TrainConfig(tokens=12 * 4 * 32, seq_len=32, batch=4, eval_every=4, ckpt_every=4, eval_batches=2)
    whole = train(TINY, corpus, cfg, tmp_path / "a" / "ckpt.pt")
    first = train(TINY, corpus, cfg, tmp_path / "b" / "ckpt.pt", stop_after=6)  # "crash" after step 6
    assert first.steps == 4  # what survived: the checkpoint at step 4
    resumed = train(TINY, corpus, cfg, tmp_path / "b" / "ckpt.pt")
    assert resumed.resumed_from == 4 and resumed.steps == whole.steps == 12
    for a, b in zip(whole.curve, resumed.curve, strict=True):
        assert a["step"] == b["step"]
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert whole.final_loss == pytest.approx(np.mean([c["val_loss"] for c in whole.curve[-3:]]))
    assert whole.curve[-1]["val_loss"] < whole.curve[0]["val_loss"] + 0.5  # it trains, it does not diverge


def _ddp_rank(rank: int, world: int, init: str, data: str, cfg: TrainConfig, ckpt: str, out: str) -> None:
    import pickle

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        r = train(TINY, load_corpus(Path(data)), cfg, Path(ckpt))
        if rank == 0:
            Path(out).write_bytes(pickle.dumps(r))
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_gives_the_one_process_curve_of_the_same_global_batch(tmp_path: Path) -> None:
    """Each process trains on its half of the same global batch; the averaged gradients are the whole batch's.
    The checkpoint rank 0 wrote then resumes in one process."""
    import pickle

    import torch.multiprocessing as mp

    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    cfg = TrainConfig(tokens=8 * 4 * 32, seq_len=32, batch=4, eval_every=2, ckpt_every=4, eval_batches=2)
    one = train(TINY, load_corpus(data), cfg, tmp_path / "one" / "ckpt.pt")
    out = tmp_path / "ddp.pkl"
    args = (2, f"file://{tmp_path / 'rendezvous'}", str(data), cfg, str(tmp_path / "two" / "ckpt.pt"), str(out))
    mp.spawn(_ddp_rank, args=args, nprocs=2)
    two = pickle.loads(out.read_bytes())
    assert two.environment["world"] == 2 and two.environment["dist_backend"] == "gloo"
    assert [c["step"] for c in two.curve] == [c["step"] for c in one.curve] == [2, 4, 6, 8]
    for a, b in zip(one.curve, two.curve, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
    longer = TrainConfig(**(cfg.__dict__ | {"tokens": 10 * 4 * 32}))  # not the same run: resume its checkpoint
    (tmp_path / "two" / "ckpt.pt").rename(tmp_path / "ckpt.pt")
    assert train(TINY, load_corpus(data), longer, tmp_path / "ckpt.pt").resumed_from == 8


def test_schedule_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(tokens=100 * 16 * 128, warmup_steps=10)
    lrs = [cfg.lr_at(s) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(cfg.lr / 10) and max(lrs) == pytest.approx(cfg.lr)
    assert lrs[-1] == pytest.approx(cfg.lr * cfg.min_lr_ratio, rel=0.01)
    assert all(b <= a + 1e-12 for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_train_cli_queue_skips_finished_runs(tmp_path: Path) -> None:
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    queue = tmp_path / "queue.yaml"
    queue.write_text(yaml.safe_dump({"jobs": [{"architecture": TINY.to_dict(), "tokens": 4 * 4 * 32}]}))
    flags = [
        "--data",
        str(data),
        "--seq-len",
        "32",
        "--batch",
        "4",
        "--eval-every",
        "2",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
    ]
    first = run_json("train", "--queue", str(queue), *flags)
    assert first[0]["status"] == "done" and first[0]["steps"] == 4 and first[0]["final_loss"] > 0
    again = run("train", "--queue", str(queue), *flags)
    assert "done before, skipped" in again.stderr
    assert "tokens:" in run("train", "-a", "tiny-gqa-4l", code=2).stderr
    assert "queue:" in run("train", "--queue", str(tmp_path / "missing.yaml"), code=2).stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"jobs": [{"tokens": 5}]}))
    assert "queue.jobs[0]" in run("train", "--queue", str(bad), code=2).stderr
