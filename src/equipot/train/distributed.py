"""Data parallelism over processes (``torch.distributed``, gloo backend, CPU).

Every process holds the full model and walks through the same global batches; process r
takes frames r, r+P, r+2P, … of each batch. Losses are normalised by global counts
(:mod:`equipot.train.loss`), so summing gradients over processes reproduces one process
training on the whole batch, up to floating-point summation order.

:func:`launch` starts P processes with :func:`torch.multiprocessing.spawn`; a run started by
``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` set) is joined as is.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from equipot.nn.constants import parameter_list


@dataclass(frozen=True)
class Comm:
    """This process's place in the group; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over processes, in place."""
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def sync_gradients(model: nn.Module, comm: Comm, extra: torch.Tensor | None = None):
    """Sum gradients (and ``extra``, a small float64 vector) over processes in one message."""
    if comm.world_size == 1:
        return extra
    params = [p for p in parameter_list(model) if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).double() for g in grads])
    if extra is not None:
        flat = torch.cat([flat, extra.double()])
    comm.all_reduce_(flat)
    start = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[start : start + n].view_as(g).to(g.dtype)
        start += n
    return None if extra is None else flat[start:]


def env_comm() -> Comm | None:
    """The group described by torchrun-style environment variables, joined; else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=world)
    return Comm(dist.get_rank(), dist.get_world_size())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(fn: Callable, nproc: int, *args) -> None:
    """Run ``fn(comm, *args)`` in ``nproc`` new processes (picklable ``fn`` and ``args``)."""
    import torch.multiprocessing as mp

    port = free_port()
    mp.spawn(_worker, args=(nproc, port, fn, args), nprocs=nproc, join=True)


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        fn(Comm(rank, world_size), *args)
    finally:
        dist.destroy_process_group()
