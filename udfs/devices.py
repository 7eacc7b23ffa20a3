"""Which torch device a tagging task uses (executor side; docs/cluster.md, "GPUs per task").

Spark hands each task the GPU addresses it was assigned (`TaskContext.get().resources()["gpu"]`)
when the cluster schedules GPUs as resources (spark.executor.resource.gpu.amount,
spark.task.resource.gpu.amount, a discovery script). An address is what the discovery script
reported, which for nvidia-smi based scripts is the GPU's index as the executor sees it:

- no CUDA_VISIBLE_DEVICES (YARN and Kubernetes containers that expose only the allocated GPUs,
  standalone workers): address "1" -> cuda:1;
- CUDA_VISIBLE_DEVICES set (by a resource manager or by hand) and listing the address: torch
  renumbers the visible devices from 0, so the device is the address's position in that list
  (CUDA_VISIBLE_DEVICES=2,3 and address "3" -> cuda:1). A discovery script that already reports
  renumbered indices under such a variable, with the physical ids also listed, is ambiguous: keep
  the two consistent (docs/cluster.md).

No GPU assigned: cuda:0 when CUDA exists, else the CPU. Assigned but no CUDA in this Python (a CPU
torch, no driver): the CPU, with a note saying so. Nothing here imports pyspark at module level.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceChoice:
    """device: a torch device string ('cpu', 'cuda:0', ...); addresses: the GPU addresses Spark
    assigned to the task (empty when none); note: why the device differs from the assignment ('' when
    it does not)."""
    device: str
    addresses: tuple[str, ...] = ()
    note: str = ""

    def describe(self) -> str:
        """One line for the run metrics, e.g. 'cuda:1 (spark gpu 1)' or 'cpu (spark gpu 0; no CUDA ...)'."""
        detail = "; ".join(part for part in (f"spark gpu {','.join(self.addresses)}" if self.addresses else "",
                                             self.note) if part)
        return f"{self.device} ({detail})" if detail else self.device


def choose_device(requested: str | None, addresses: list[str] | tuple[str, ...], cuda_count: int,
                  visible: str | None = None) -> DeviceChoice:
    """The device for one task. requested: the spec's device (a torch device string) or None for
    automatic; addresses: the task's Spark GPU addresses (may be empty); cuda_count:
    torch.cuda.device_count() (0 without CUDA); visible: $CUDA_VISIBLE_DEVICES or None. A requested
    device always wins. Raises ValueError when an assigned address maps to no visible CUDA device
    (a discovery script that disagrees with the devices this process can see)."""
    addresses = tuple(str(a) for a in addresses)
    if requested:
        return DeviceChoice(requested, addresses, "set by the job's spec" if addresses else "")
    if not addresses:
        return DeviceChoice("cuda:0" if cuda_count else "cpu")
    if not cuda_count:
        return DeviceChoice("cpu", addresses, "no CUDA in this Python: tagging on CPU")
    first = addresses[0]
    listed = [v.strip() for v in visible.split(",")] if visible else []
    ordinal = listed.index(first) if first in listed else int(first) if first.isdigit() else -1
    if not 0 <= ordinal < cuda_count:
        raise ValueError(f"Spark assigned GPU address {first!r} but this process sees {cuda_count} CUDA device(s)"
                         f" (CUDA_VISIBLE_DEVICES={visible!r}); make the GPU discovery script report the indices "
                         f"the executors see (docs/cluster.md)")
    return DeviceChoice(f"cuda:{ordinal}", addresses)


def task_device(requested: str | None = None) -> DeviceChoice:
    """choose_device for the running Spark task: its assigned GPU addresses (none outside a Spark
    task), torch's CUDA device count and $CUDA_VISIBLE_DEVICES. Raises ValueError as choose_device."""
    import torch

    addresses: list[str] = []
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        if context is not None and "gpu" in context.resources():
            addresses = list(context.resources()["gpu"].addresses)
    except ImportError:  # no pyspark: the GPU check script, tests on pandas
        pass
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return choose_device(requested, addresses, count, os.environ.get("CUDA_VISIBLE_DEVICES"))
