"""The edge to other machines: work spread over a cluster behind one small protocol.

`Local` runs everything here, one item after another, in order: what every command does without `--ray`.
`connect(address)` gives a Ray cluster (cluster/ray_cluster.py; Ray is an optional extra, imported only
then). Callers hand over plain functions and their arguments; only the driver ever writes the store.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from cobench.errors import ClusterError

Node = dict[str, Any]  # where an item ran: hostname (and Ray's node id and address)


class Cluster(Protocol):
    """Where work runs. `map_unordered` yields (index, fn(*item), node) as items finish, each item needing
    `resources` (Ray resource names → amounts) for as long as it runs. `map_groups` does the same with each
    item run on `world` processes (one GPU, or one CPU, each) joined as one torch.distributed group, the
    value being rank 0's; `storage` is a folder every node sees."""

    address: str | None

    def map_unordered(
        self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], resources: dict[str, float]
    ) -> Iterator[tuple[int, Any, Node]]: ...

    def map_groups(
        self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], world: int, gpus: bool, storage: Path
    ) -> Iterator[tuple[int, Any, Node]]: ...

    def nodes_with(self, resource: str) -> list[Node]: ...


def here() -> Node:
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


class Local:
    """This machine, one item at a time in the order given (the default of every command)."""

    address: str | None = None

    def map_unordered(
        self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], resources: dict[str, float]
    ) -> Iterator[tuple[int, Any, Node]]:
        for i, args in enumerate(items):
            yield i, fn(*args), here()

    def map_groups(
        self, fn: Callable[..., Any], items: Sequence[tuple[Any, ...]], world: int, gpus: bool, storage: Path
    ) -> Iterator[tuple[int, Any, Node]]:
        if world != 1:
            raise ClusterError(f"gpus-per-run: {world} processes per run need a cluster: give --ray ADDRESS")
        return self.map_unordered(fn, items, {})

    def nodes_with(self, resource: str) -> list[Node]:
        return [here()]


def connect(address: str | None) -> Cluster:
    """The cluster at `address` (a Ray address: host:port, `auto`, or `local` for a one-machine Ray), or
    `Local()` when none is given."""
    if not address:
        return Local()
    from cobench.cluster.ray_cluster import RayCluster

    return RayCluster(address)
