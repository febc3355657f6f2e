"""Ray as the cluster: work items as Ray tasks scheduled by resources, groups as Ray Train's TorchTrainer.

A board joins with `ray start --address=HEAD --resources='{"<device name>": 1}'`: a task asking for that
resource runs on such a node, one at a time per board, so two measurements never share a device. A task
whose node dies is retried by Ray on another node that has the resource (`RETRIES`); an error raised by
the work itself is not retried, it is the work's answer. Results come back to the driver in the order
they finish.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cobench.cluster import Node, here
from cobench.errors import ClusterError, CobenchError, MissingDependency

RETRIES = 3  # re-runs of a task whose node or worker process died
CONNECT_TIMEOUT_S = 5.0


def _reachable(address: str) -> None:
    """Ray waits minutes for an address nobody answers at; a TCP connect says so in seconds."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"ray: {address!r} is not HOST:PORT (or auto, local, ray://HOST:PORT)")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(f"ray: no Ray cluster answers at {address} ({e.strerror or e}); start one with "
                           "`ray start --head` there, or check the address") from None  # fmt: skip


def _on_node(fn: Callable[..., Any], *args: Any) -> tuple[Any, Node]:
    """Run one item where Ray placed it, and say where that was."""
    import ray

    ctx = ray.get_runtime_context()
    return fn(*args), here() | {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address()}


class RayCluster:
    def __init__(self, address: str) -> None:
        try:
            import ray
        except ImportError:
            raise MissingDependency("ray: Ray is not installed here: pip install 'cobench[cluster]'") from None
        _reachable(address)
        self.address = address
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise ClusterError(f"ray: cannot join the Ray cluster at {address}: {e}") from None

    def nodes_with(self, resource: str) -> list[Node]:
        return [
            {"node_id": n["NodeID"], "ip": n["NodeManagerAddress"], "hostname": n.get("NodeManagerHostname")}
            for n in self._ray.nodes()
            if n["Alive"] and n["Resources"].get(resource, 0) > 0
        ]

    def map_unordered(
        self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], resources: dict[str, float]
    ) -> Iterator[tuple[int, Any, Node]]:
        ray = self._ray
        custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU")}
        task = ray.remote(_on_node).options(
            num_cpus=resources.get("CPU", 0), num_gpus=resources.get("GPU", 0), resources=custom or None,
            max_retries=RETRIES, retry_exceptions=False,
        )  # fmt: skip
        index = {task.remote(fn, *args): i for i, args in enumerate(items)}
        waiting = list(index)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                value, node = self._get(done[0])
                yield index[done[0]], value, node
        finally:  # Ctrl-C, an error, or the caller stopped early: nothing keeps running for nobody
            for ref in waiting:
                ray.cancel(ref, force=True)

    def _get(self, ref: Any) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, BaseException) else None
            if isinstance(cause, CobenchError | KeyboardInterrupt):
                raise cause from None
            raise ClusterError(f"ray: a task failed on the cluster: {str(e).splitlines()[-1][:300]}") from None
        except (ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError, ray.exceptions.RayError) as e:
            lost = f"ray: a task was lost {RETRIES + 1} times with its node or worker ({type(e).__name__})"
            raise ClusterError(f"{lost}; what finished is kept, run again to resume") from None

    def map_groups(
        self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], world: int, gpus: bool, storage: Path
    ) -> Iterator[tuple[int, Any, Node]]:
        """A one-process item is a task holding its GPU (or CPU); a bigger one a task holding nothing that
        runs Ray Train's TorchTrainer, which places the `world` workers (and queues them while the cluster
        is full), so several groups train at once where the GPUs allow."""
        if world == 1:
            return self.map_unordered(fn, items, {"GPU": 1} if gpus else {"CPU": 1})
        groups = [(fn, args, world, gpus, str(storage), f"group-{os.getpid()}-{i}") for i, args in enumerate(items)]
        return self.map_unordered(_fit_group, groups, {"CPU": 0})


def _fit_group(fn: Callable[..., Any], args: tuple[Any, ...], world: int, gpus: bool, storage: str, name: str) -> Any:
    """`fn(*args)` on `world` Ray Train workers (NCCL on GPUs, gloo on CPUs); rank 0's value comes back
    through `storage`, which every node sees."""
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        raise MissingDependency("ray: Ray Train is not installed here: pip install 'cobench[cluster]'") from None
    answer = Path(storage) / name / "rank0.pkl"
    answer.parent.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        _rank_zero_answers,
        train_loop_config={"fn": fn, "args": args, "answer": str(answer)},
        scaling_config=ScalingConfig(num_workers=world, use_gpu=gpus),
        run_config=RunConfig(storage_path=storage, name=name),
    )
    try:
        trainer.fit()
    except Exception as e:  # Ray Train wraps the workers' errors
        raise ClusterError(f"ray: a {world}-process group failed: {str(e).splitlines()[-1][:300]}") from None
    with answer.open("rb") as f:
        return pickle.load(f)


def _rank_zero_answers(config: dict[str, Any]) -> None:
    import torch.distributed as dist

    value = config["fn"](*config["args"])
    if dist.get_rank() == 0:
        tmp = Path(config["answer"]).with_suffix(".tmp")
        with tmp.open("wb") as f:
            pickle.dump(value, f)
        tmp.replace(config["answer"])
