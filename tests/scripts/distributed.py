"""Process-group teardown for the scripts run under ``accelerate launch``."""

from __future__ import annotations


def end_process_group() -> None:
    """Tear the process group down before exit, as torch asks: exiting with it alive can abort a rank."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
