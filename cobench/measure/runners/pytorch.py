"""PyTorch eager runner (CPU or CUDA), optionally replaying the decode step as a CUDA graph.

The KV cache is static, as engines keep it (arch/model.py StaticCache): allocated for the whole
generation, each step writing its position in place; attention is SDPA with GQA handled inside it. Every
layer kind runs: MLA on its latent cache (absorbed in decode), linear and convolution layers on their state.
On CUDA, calls are timed with CUDA events on the current stream; on CPU with the host clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import InputError, MissingDependency
from cobench.measure.clocks import time_cuda, time_host
from cobench.measure.generation import fixed_step

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class TorchRunner:
    model: Any
    device: str
    dtype: Any
    build_s: float
    cuda_graphs: bool
    capacity: int
    allocations: int = 0  # caches allocated so far: at most one per generation, never per step
    _graph_caches: dict[int, Any] = field(default_factory=dict)
    _graphs: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    name: str = "torch"

    @classmethod
    def open(cls, arch: Architecture, precision: str, device: str, options: dict[str, Any]) -> TorchRunner:
        try:
            import torch
        except ImportError:
            raise MissingDependency("the torch backend needs torch: make install") from None
        from cobench.arch.model import build_model

        if precision not in DTYPES:
            raise InputError("precision", f"the torch backend runs {', '.join(DTYPES)}, not {precision!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise MissingDependency("device cuda requested but torch.cuda.is_available() is False")
        if device not in ("cpu", "cuda"):
            raise InputError("torch_device", f"cpu or cuda, got {device!r}")
        if options.get("threads"):
            torch.set_num_threads(int(options["threads"]))
        t0 = time.perf_counter()
        dtype = getattr(torch, DTYPES[precision])
        model = build_model(arch, seed=int(options.get("seed", 0)), dtype=dtype).to(device)
        return cls(
            model,
            device,
            dtype,
            time.perf_counter() - t0,
            bool(options.get("cuda_graphs")) and device == "cuda",
            int(options.get("capacity") or arch.max_seq_len),
        )

    def info(self) -> dict[str, Any]:
        import torch

        info = {
            "backend": "torch",
            "torch": torch.__version__,
            "device": self.device,
            "dtype": str(self.dtype),
            "build_s": self.build_s,
            "threads": torch.get_num_threads(),
            "cuda_graphs": self.cuda_graphs,
            "kv_cache": f"static, {self.capacity} positions, written in place",
        }
        if self.device == "cuda":
            info |= {
                "gpu": torch.cuda.get_device_name(0),
                "cuda": torch.version.cuda,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,  # off by default: fp32 is fp32
            }
        return info

    def _tensor(self, ids: Any) -> Any:
        import torch

        return ids if isinstance(ids, torch.Tensor) else torch.as_tensor(ids, device=self.device)

    def _positions(self, start: int, count: int) -> Any:
        import torch

        return torch.arange(start, start + count, device=self.device)

    def new_cache(self, batch: int) -> Any:
        """The generation's cache, allocated once; under CUDA graphs one per batch size for the runner's
        life (a captured graph holds its addresses), reused by every generation."""
        from cobench.arch.model import StaticCache

        if self.cuda_graphs and batch in self._graph_caches:
            cache = self._graph_caches[batch]
            cache.length = 0
            return cache
        cache = StaticCache.allocate(self.model.arch, batch, self.capacity, self.dtype, self.device, self.model)
        self.allocations += 1
        if self.cuda_graphs:
            self._graph_caches[batch] = cache
        return cache

    def _step(self, ids: np.ndarray, cache: Any) -> Any:
        import torch

        t = ids.shape[1]
        total = cache.length + t
        if total > cache.capacity:
            raise ValueError(f"the KV cache holds {cache.capacity} positions; this step needs {total}")
        with torch.inference_mode():
            if t == 1 and self.cuda_graphs:
                logits = self._replay(ids, cache)
            else:
                logits = self.model.step(self._tensor(ids), cache, self._positions(cache.length, t), total)
        cache.length = total
        return logits

    def _replay(self, ids: np.ndarray, cache: Any) -> Any:
        """The decode step as a CUDA graph captured once per cache: the whole capacity read under a mask,
        the token and position copied into the graph's static inputs before each replay."""
        import torch

        if id(cache) not in self._graphs:
            static_ids = self._tensor(ids)
            position = self._positions(cache.length, 1)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm up allocations outside the graph
                    self.model.step(static_ids, cache, position, None)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self.model.step(static_ids, cache, position, None)
            self._graphs[id(cache)] = (graph, static_ids, position, logits)
        graph, static_ids, position, logits = self._graphs[id(cache)]
        static_ids.copy_(self._tensor(ids), non_blocking=True)
        position.fill_(cache.length)
        graph.replay()
        return logits

    def prefill(self, ids: np.ndarray) -> Any:
        cache = self.new_cache(ids.shape[0])
        self._step(ids, cache)
        return cache

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        self._step(ids, cache)
        return cache

    def logits(self, ids: np.ndarray, cache: Any) -> np.ndarray:
        """The step's last-position logits (tests)."""
        return self._step(ids, cache).float().cpu().numpy()

    def make_cache(self, batch: int, context: int) -> Any:
        import torch

        cache = self.new_cache(batch)
        g = torch.Generator(device=self.device).manual_seed(0)
        for buffer in cache.tensors():
            buffer.copy_(torch.randn(buffer.shape, generator=g, device=self.device, dtype=self.dtype))
        cache.length = context
        return cache

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        """The token goes to the device here, once: no host→device copy inside the timed step."""
        return fixed_step(self._step, self._tensor(ids), cache)

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_cuda(fn) if self.device == "cuda" else time_host(fn)
