"""Training text: a default corpus every Python installation carries, or the user's files, as token ids.

Default: the interpreter's help topics (pydoc_data) followed by the standard library's Python sources in
sorted path order, up to a byte budget — deterministic for a given Python, hashed so that a run records
exactly what it trained on, and needing no network. Byte-level tokens (0–255) unless the user brings a
tokenizer. User data: text files (.txt/.md/.py/... read as UTF-8 bytes, or tokenised with a
`tokenizer.json` when the `tokenizers` package is installed) or nanoGPT-style `.bin` files of uint16
token ids. The validation split is the tail of the text (or the --val file), never seen in training.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cobench.errors import InputError, MissingDependency

DEFAULT_BYTES = 6 << 20  # 6 MiB of text: enough for the short CPU runs the loss law is fitted on
VAL_FRACTION = 0.05
BYTE_VOCAB = 256


@dataclass(frozen=True)
class Corpus:
    train: np.ndarray  # token ids (int64)
    val: np.ndarray
    vocab_size: int
    bytes_per_token: float  # for bits per byte
    sha256: str
    source: str


def _stdlib_text(budget: int) -> bytes:
    import pydoc_data.topics as topics

    parts = [topics.topics[k].encode() for k in sorted(topics.topics)]
    size = sum(len(p) for p in parts)
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if size >= budget:
            break
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data)
        size += len(data)
    return b"\n".join(parts)[:budget]


def _tokens_of_text(data: bytes, tokenizer: Path | None) -> tuple[np.ndarray, int]:
    if tokenizer is None:
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64), BYTE_VOCAB
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise MissingDependency("--tokenizer needs the `tokenizers` package: pip install tokenizers") from None
    tok = Tokenizer.from_file(str(tokenizer))
    return np.asarray(tok.encode(data.decode("utf-8", errors="replace")).ids, dtype=np.int64), tok.get_vocab_size()


def _read(path: Path, field: str, tokenizer: Path | None) -> tuple[np.ndarray, int, int]:
    """(tokens, vocab, bytes of text or -1 for pre-tokenised .bin)."""
    if not path.is_file():
        raise InputError(field, f"file {path} does not exist")
    if path.suffix == ".bin":
        tokens = np.fromfile(path, dtype=np.uint16).astype(np.int64)
        if tokens.size == 0:
            raise InputError(field, f"{path} holds no tokens")
        return tokens, int(tokens.max()) + 1, -1
    data = path.read_bytes()
    if not data:
        raise InputError(field, f"{path} is empty")
    tokens, vocab = _tokens_of_text(data, tokenizer)
    return tokens, vocab, len(data)


def load_corpus(
    data: Path | None = None, val: Path | None = None, tokenizer: Path | None = None, budget: int = DEFAULT_BYTES
) -> Corpus:
    """The default stdlib corpus, or the user's --data (and --val) files."""
    if data is None:
        if val is not None:
            raise InputError("val", "--val needs --data")
        text = _stdlib_text(budget)
        tokens, vocab = _tokens_of_text(text, tokenizer)
        n_bytes, source = len(text), f"python-stdlib ({len(text):,} bytes of help topics and sources)"
        train_tokens, val_tokens = None, None
    else:
        tokens, vocab, n_bytes = _read(data, "data", tokenizer)
        source = str(data)
        train_tokens, val_tokens = (tokens, _read(val, "val", tokenizer)[0]) if val else (None, None)
    if train_tokens is None:
        cut = int(len(tokens) * (1 - VAL_FRACTION))
        train_tokens, val_tokens = tokens[:cut], tokens[cut:]
    assert val_tokens is not None
    vocab = max(vocab, int(val_tokens.max()) + 1)
    digest = hashlib.sha256(train_tokens.tobytes() + b"|" + val_tokens.tobytes()).hexdigest()[:16]
    bytes_per_token = n_bytes / len(tokens) if n_bytes > 0 else float("nan")
    return Corpus(train_tokens, val_tokens, vocab, bytes_per_token, digest, source)
