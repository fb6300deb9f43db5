"""The processes a launcher started for this fit, as the factorization's Ranks."""
from __future__ import annotations

from scaletrain.models.factorization import Ranks


def ranks_here() -> Ranks:
    """The processes a launcher started for this fit (`train --nproc-per-node N`), summing the
    factorization's gradients with torch.distributed; one process: Ranks()."""
    import torch.distributed as dist

    from scaletrain.parallel import distributed

    here = distributed.world()
    if not here.active:
        return Ranks()

    def all_reduce(grads: list) -> None:
        for grad in grads:
            dist.all_reduce(grad)

    return Ranks(here.rank, here.size, all_reduce)
