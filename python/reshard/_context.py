"""reshard.Context: a mesh over an MPI communicator, resharding NumPy arrays and torch tensors."""
from __future__ import annotations

import atexit
import sys
import weakref
from typing import Any

import numpy as np

from . import _core
from ._core import Error, Mesh, MismatchError, Plan, Type
from ._dtypes import numpy_dtype, torch_dtype

_live: "weakref.WeakSet[Context]" = weakref.WeakSet()


def _close_all() -> None:
    # Before MPI_Finalize: every Context frees its communicators while MPI still works. Runs
    # before mpi4py's own exit hook when mpi4py was imported first (atexit is last-in first-out);
    # otherwise a Context finds MPI finalized and leaves its handles alone.
    for ctx in list(_live):
        ctx.close()
    if _core.has_mpi:
        _core.mpi_finalize()  # only if reshard initialised MPI


atexit.register(_close_all)


def _comm_address(comm: Any) -> int:
    """Address of the MPI_Comm behind `comm`: None (the world), an mpi4py communicator, or an int
    that already is the address of an MPI_Comm (as mpi4py's MPI._addressof gives)."""
    if comm is None:
        return 0
    if isinstance(comm, int):
        if comm <= 0:
            raise ValueError(f"comm: {comm} is not the address of an MPI_Comm")
        return comm
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and isinstance(comm, mpi.Comm):
        if comm == mpi.COMM_NULL:
            raise ValueError("comm: the communicator is MPI.COMM_NULL")
        return mpi._addressof(comm)
    raise TypeError(f"comm must be None, an mpi4py communicator or the address of an MPI_Comm, not {type(comm).__name__}")


def local_slices(type: Type, device: int) -> tuple:
    """The device's block of `type` as slices of the global array: global[local_slices(t, d)]."""
    return tuple(slice(lo, hi) for lo, hi in type.block(device))


class Context:
    """A Mesh over the first mesh.num_devices ranks of an MPI communicator (collective to create).

    comm: an mpi4py communicator, or None for MPI_COMM_WORLD (MPI is initialised if nobody has).
    topology / strategy: as for reshard.plan. timeout_s: deadline of every blocking MPI wait
    (None: $RESHARD_TIMEOUT_S, else 300 s; 0: none); past it the job ends rather than hangs.
    Ranks outside the mesh take part in nothing: their reshard calls return empty arrays.
    """

    def __init__(self, mesh: Mesh | str, comm: Any = None, *, topology: str | None = None,
                 strategy: str = "reshard", timeout_s: float | None = None, check_every_call: bool = True):
        if not _core.has_mpi:
            raise Error("this build of reshard has no MPI backend (it was built without MPI)")
        self.mesh: Mesh = mesh if isinstance(mesh, Mesh) else Mesh(mesh)
        address = _comm_address(comm)
        _core.mpi_init()
        self._c = _core._Context(self.mesh, address, topology or "", strategy, timeout_s, check_every_call)
        _live.add(self)

    # -- life cycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Frees the Context's communicators (also done at exit). Later calls raise reshard.Error."""
        self._c.close()

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- this rank --------------------------------------------------------------------------
    @property
    def device(self) -> int:
        """This rank's device number on the mesh, -1 on ranks outside it."""
        return self._c.device

    @property
    def participates(self) -> bool:
        return self._c.participates

    def type(self, t: Type | str) -> Type:
        """`t` as a Type on this Context's mesh (text is parsed)."""
        return t if type(t) is Type else Type(t, self.mesh)

    def local_block(self, t: Type | str) -> list[tuple[int, int]]:
        """This rank's block of `t`: (lo, hi) per dim (empty intervals outside the mesh)."""
        return self._c.local_block(self.type(t))

    def local_shape(self, t: Type | str) -> tuple:
        return self._c.local_shape(self.type(t))

    def local_slices(self, t: Type | str) -> tuple:
        """This rank's block of `t` as slices of the global array."""
        return tuple(slice(lo, hi) for lo, hi in self.local_block(t))

    def plan(self, src: Type | str, dst: Type | str) -> Plan:
        """The plan this Context runs for src -> dst (cached)."""
        return self._c.plan(self.type(src), self.type(dst))

    # -- arrays -----------------------------------------------------------------------------
    def empty(self, t: Type | str, like: Any = None) -> Any:
        """An uninitialised local shard of `t`: a NumPy array, or a torch tensor when `like` is one."""
        t = self.type(t)
        shape = self._c.local_shape(t)
        if like is not None and _is_torch(like):
            import torch

            return torch.empty(shape, dtype=torch_dtype(t.dtype))
        return np.empty(shape, numpy_dtype(t.dtype))

    def reshard(self, x: Any, src: Type | str, dst: Type | str) -> Any:
        """This rank's shard of the same logical array with type `dst`, from its shard `x` of `src`.

        x: a C-contiguous NumPy array or torch CPU tensor of src's local shape and dtype (read in
        place, never written). Returns a new array of the same kind. Collective over the mesh.
        """
        src = src if type(src) is Type else Type(src, self.mesh)
        dst = dst if type(dst) is Type else Type(dst, self.mesh)
        if type(x) is np.ndarray:
            out = np.empty(self._c.local_shape(dst), x.dtype)
            if x.dtype.char == "E":  # ml_dtypes' bfloat16 exports no buffer: pass its bits
                self._c.reshard_into(x.view(np.uint16), out.view(np.uint16), src, dst)
            else:
                self._c.reshard_into(x, out, src, dst)
            return out
        if _is_torch(x):
            import torch

            out = np.empty(self._c.local_shape(dst), np.uint16 if dst.dtype == "bf16" else numpy_dtype(dst.dtype))
            self._c.reshard_into(_torch_view(x, src, "input"), out, src, dst)
            t = torch.from_numpy(out)  # the tensor owns the NumPy buffer: no copy
            return t.view(torch.bfloat16) if dst.dtype == "bf16" else t
        out = np.empty(self._c.local_shape(dst), numpy_dtype(dst.dtype))
        self._c.reshard_into(x, out, src, dst)
        return out

    def reshard_into(self, x: Any, out: Any, src: Type | str, dst: Type | str) -> Any:
        """Like reshard, but writes the result into `out` (a writable C-contiguous array of dst's
        local shape): no allocation, for loops that reshard every step. Returns `out`."""
        src = src if type(src) is Type else Type(src, self.mesh)
        dst = dst if type(dst) is Type else Type(dst, self.mesh)
        o = out
        if type(out) is np.ndarray:
            if not out.flags.writeable:
                raise MismatchError("reshard_into: the output array is read-only")
            if not out.flags.c_contiguous:
                raise MismatchError("reshard_into: the output array is not C-contiguous; the result is written in place")
            if out.dtype.char == "E":
                o = out.view(np.uint16)
        elif _is_torch(out):
            if not out.is_contiguous():
                raise MismatchError("reshard_into: the output tensor is not contiguous; the result is written in place")
            o = _torch_view(out, dst, "output")
        if type(x) is np.ndarray and x.dtype.char == "E":
            x = x.view(np.uint16)
        self._c.reshard_into(_torch_view(x, src, "input") if _is_torch(x) else x, o, src, dst)
        return out

    def run(self, plan: Plan, x: Any, out: Any) -> Any:
        """Runs an explicit plan (from reshard.plan or Context.plan) from x into out."""
        self._c.run(plan, _torch_view(x, plan.src, "input") if _is_torch(x) else x,
                    _torch_view(out, plan.dst, "output") if _is_torch(out) else out)
        return out

    # -- checks -----------------------------------------------------------------------------
    def index_array(self, t: Type | str, like: Any = None) -> Any:
        """This rank's shard of `t` filled as `reshard run --fill index` fills it."""
        t = self.type(t)
        out = self.empty(t, like)
        self._c.fill_index(t, _torch_view(out, t, "output") if _is_torch(out) else out)
        return out

    def count_index_mismatches(self, t: Type | str, x: Any, source: Type | str | None = None) -> int:
        """Elements of `t`, over all ranks, that differ from the index fill (collective)."""
        t = self.type(t)
        if _is_torch(x):
            x = _torch_view(x, t, "input")
        return self._c.count_index_mismatches(t, x, None if source is None else self.type(source))

    def explain(self, plan: Plan) -> str:
        """How this rank ran each step of `plan` (empty before its first run)."""
        return self._c.explain(plan)

    def workspace_bytes(self, plan: Plan) -> int:
        return self._c.workspace_bytes(plan)

    def __repr__(self) -> str:
        return f"<reshard.Context mesh={self.mesh} device={self.device}>"


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


_TORCH_16BIT: dict = {}


def _torch_view(x: Any, t: Type, what: str) -> np.ndarray:
    """A NumPy view of a torch CPU tensor's memory (no copy; NumPy's buffer protocol is the fast
    way in). 16-bit floats go as their bits, so their dtype is checked here."""
    if not x.is_cpu:
        raise MismatchError(f"the {what} tensor is on {x.device}; reshard.Context moves host (CPU) tensors")
    if x.requires_grad:
        x = x.detach()
    if not _TORCH_16BIT:
        import torch

        _TORCH_16BIT.update({torch.float16: "f16", torch.bfloat16: "bf16"})
    name = _TORCH_16BIT.get(x.dtype)
    if name is None:
        return x.numpy()
    if name != t.dtype:
        raise MismatchError(f"the {what} tensor holds {x.dtype}, but {t} needs {t.dtype}")
    import torch

    return x.view(torch.int16).numpy().view(np.uint16)  # same bits; NumPy has no bfloat16
