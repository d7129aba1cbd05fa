"""reshard: type-directed resharding of distributed arrays over MPI (docs/python.md).

    import reshard
    mesh = reshard.Mesh("x=2,y=2")
    src = reshard.Type("f32[30{x,y},7]", mesh)
    dst = reshard.Type("f32[30,7{x}]", mesh)
    print(reshard.plan(mesh, src, dst))
    ctx = reshard.Context(mesh)                   # under mpirun; comm: an mpi4py communicator
    out = ctx.reshard(local, src, dst)            # NumPy array or torch CPU tensor in, same kind out
    x = reshard.XContext("fsdp=2,tp=2@0-3", "r=2,tp=2@4-7")   # two meshes, one communicator
    outs = x.reshard_batch(shards, srcs, dsts)    # many arrays, one plan; reshard_batch_async: a Handle
"""
from __future__ import annotations

import os as _os
import sys as _sys

# Open MPI loads its plugins with dlopen and expects libmpi's symbols to be global; an
# extension module is loaded RTLD_LOCAL by default, so load ours (and libmpi with it) globally.
_flags = _sys.getdlopenflags()
_sys.setdlopenflags(_flags | _os.RTLD_GLOBAL)
try:
    from . import _core
finally:
    _sys.setdlopenflags(_flags)

from ._core import BatchPlan, Error, MismatchError, Mesh, ParseError, Plan, Type
from ._context import Context, local_slices
from ._xcontext import Handle, XContext, plan_batch
from ._dtypes import dtype_name, numpy_dtype, torch_dtype
from .interop import (
    ConversionError,
    Partial,
    PartitionSpec,
    Replicate,
    Shard,
    StridedShard,
    _StridedShard,
    from_partition_spec,
    from_placements,
    mesh_from,
    to_partition_spec,
    to_placements,
)

__version__: str = _core.__version__
has_mpi: bool = _core.has_mpi


def plan(mesh: Mesh | str, src: Type | str, dst: Type | str, topology: str | None = None, *,
         strategy: str = "reshard", verify: bool = False) -> Plan:
    """The plan that reshards `src` into `dst` on `mesh` (symbolic: no data, no MPI).

    `topology`: per-axis links for the cost model, e.g. "tp=nvlink,dp=ib" or "tp=300,dp=25:10us".
    `strategy`: reshard, naive, greedy_per_axis, dtensor or exchange. `verify`: run it on the simulator.
    """
    mesh = mesh if isinstance(mesh, Mesh) else Mesh(mesh)
    src = src if isinstance(src, Type) else Type(src, mesh)
    dst = dst if isinstance(dst, Type) else Type(dst, mesh)
    return _core.plan(mesh, src, dst, topology or "", strategy, verify)


__all__ = [
    "BatchPlan", "Handle", "XContext", "plan_batch",
    "Context", "ConversionError", "Error", "Mesh", "MismatchError", "ParseError", "Partial",
    "PartitionSpec", "Plan", "Replicate", "Shard", "StridedShard", "Type", "__version__",
    "dtype_name", "from_partition_spec", "from_placements", "local_slices", "mesh_from",
    "numpy_dtype", "plan", "to_partition_spec", "to_placements", "torch_dtype",
]
