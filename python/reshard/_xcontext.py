"""reshard.XContext: cross-mesh, batched and asynchronous resharding of NumPy arrays and torch
tensors (docs/python.md, "Batches and other meshes")."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import _core
from ._context import _comm_address, _is_torch, _live, _torch_view
from ._core import BatchPlan, Error, Mesh, MismatchError, Type
from ._dtypes import numpy_dtype, torch_dtype

# NumPy inputs of reshards in flight, made read-only until their handle's wait(): id -> (array,
# reshards in flight reading it, whether it was writable before).
_reading: dict[int, list] = {}


def _guard(xs: Sequence[Any]) -> list:
    guarded = []
    for x in xs:
        if type(x) is not np.ndarray or id(x) in [id(g) for g in guarded]:
            continue
        entry = _reading.get(id(x))
        if entry is None:
            entry = _reading[id(x)] = [x, 0, x.flags.writeable]
            x.flags.writeable = False
        entry[1] += 1
        guarded.append(x)
    return guarded


def _watch(xs: Sequence[Any]) -> list:
    """(index, tensor, version) of the torch inputs: torch has no read-only flag, but every
    in-place write bumps a tensor's version counter, so wait() can tell a write in flight."""
    return [(i, x, x._version) for i, x in enumerate(xs) if _is_torch(x)]


def _check_unwritten(watched: list) -> None:
    written = [i for i, x, v in watched if x._version != v]
    if written:
        raise Error(f"torch input(s) {written} were written while their reshard was in flight; the outputs may "
                    "hold a mix of old and new values (do not write an input before wait())")


def _unguard(guarded: list) -> None:
    for x in guarded:
        entry = _reading.get(id(x))
        if entry is None:
            continue
        entry[1] -= 1
        if entry[1] == 0:
            del _reading[id(x)]
            if entry[2]:
                x.flags.writeable = True


def _named(srcs: Sequence[Any], dsts: Sequence[Any], names: Sequence[str] | None) -> list:
    """(name, source, target) triples; names default to the arrays' indices."""
    if len(srcs) != len(dsts):
        raise MismatchError(f"a batch of {len(srcs)} source types and {len(dsts)} target types")
    if names is None:
        names = [str(i) for i in range(len(srcs))]
    elif len(names) != len(srcs):
        raise MismatchError(f"a batch of {len(srcs)} arrays with {len(names)} names")
    return [(str(n), s, d) for n, s, d in zip(names, srcs, dsts)]


class Handle:
    """A batched or cross-mesh reshard in flight (from XContext.reshard_async and
    reshard_batch_async). test() advances it without blocking; wait() finishes it and returns
    the outputs (a list for a batch, one array for reshard_async), once. NumPy inputs are
    read-only until wait() (writing them raises ValueError); torch tensors cannot be made
    read-only, so wait() raises Error if one was written in place meanwhile (torch counts every
    in-place write). Dropping an unfinished handle finishes it (collectively, like wait())."""

    def __init__(self, box: Any, outs: list, guarded: list, watched: list, single: bool):
        self._box = box
        self._outs = outs
        self._guarded = guarded
        self._watched = watched
        self._single = single
        self._taken = False

    def test(self) -> bool:
        """Advances the reshard (unpacks what arrived, posts the next phase); True once done."""
        return self._box.test()

    @property
    def done(self) -> bool:
        return self._box.done

    def wait(self) -> Any:
        """Blocks until done (within RESHARD_TIMEOUT_S) and returns the outputs."""
        if self._taken:
            raise Error("Handle.wait(): the outputs were already taken")
        try:
            self._box.wait()
        finally:
            _unguard(self._guarded)
            self._guarded = []
        self._taken = True
        watched, self._watched = self._watched, []
        _check_unwritten(watched)
        return self._outs[0] if self._single else self._outs

    def __del__(self) -> None:
        _unguard(getattr(self, "_guarded", []))


class XContext:
    """A source mesh and a target mesh over one MPI communicator (collective to create).

    Either mesh may sit on chosen ranks ("fsdp=2,tp=2@0-3", "r=2,tp=2@4-7"); their rank sets
    may be equal, overlap or be disjoint. Every rank of the communicator calls every reshard;
    ranks outside a mesh pass (and get) empty arrays for it. memory_cap: bytes of staging per
    rank (0: none), the batch then runs in buckets. timeout_s: as for Context.
    """

    def __init__(self, src_mesh: Mesh | str, dst_mesh: Mesh | str, comm: Any = None, *, memory_cap: int = 0,
                 timeout_s: float | None = None):
        if not _core.has_mpi:
            raise Error("this build of reshard has no MPI backend (it was built without MPI)")
        self.src_mesh: Mesh = src_mesh if isinstance(src_mesh, Mesh) else Mesh(src_mesh)
        self.dst_mesh: Mesh = dst_mesh if isinstance(dst_mesh, Mesh) else Mesh(dst_mesh)
        if memory_cap < 0:
            raise ValueError(f"memory_cap: {memory_cap} is negative")
        address = _comm_address(comm)
        _core.mpi_init()
        self._c = _core._XContext(self.src_mesh, self.dst_mesh, address, memory_cap, timeout_s)
        _live.add(self)

    def close(self) -> None:
        """Frees the XContext's communicators (also done at exit)."""
        self._c.close()

    def __enter__(self) -> "XContext":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- this rank --------------------------------------------------------------------------
    @property
    def rank(self) -> int:
        return self._c.rank

    @property
    def src_device(self) -> int:
        """This rank's device on the source mesh, -1 off it."""
        return self._c.src_device

    @property
    def dst_device(self) -> int:
        return self._c.dst_device

    @property
    def workspace_peak_bytes(self) -> int:
        """Staging bytes this rank held at once so far (within memory_cap when one is set)."""
        return self._c.workspace_peak_bytes

    def src_type(self, t: Type | str) -> Type:
        return t if type(t) is Type else Type(t, self.src_mesh)

    def dst_type(self, t: Type | str) -> Type:
        return t if type(t) is Type else Type(t, self.dst_mesh)

    def local_shape(self, t: Type | str, *, target: bool = False) -> tuple:
        """This rank's local shape of `t`, a source type (or a target type with target=True)."""
        t = self.dst_type(t) if target else self.src_type(t)
        d = self.dst_device if target else self.src_device
        return t.local_shape(d) if d >= 0 else (0,) * t.ndim

    # -- plans ------------------------------------------------------------------------------
    def plan_batch(self, srcs: Sequence[Type | str], dsts: Sequence[Type | str],
                   names: Sequence[str] | None = None) -> BatchPlan:
        """The one plan that moves array i from srcs[i] (on the source mesh) to dsts[i] (on the
        target mesh), cached. Raises MismatchError when an array's shapes or dtypes differ."""
        return self._c.plan([(n, self.src_type(s), self.dst_type(d)) for n, s, d in _named(srcs, dsts, names)])

    # -- arrays -----------------------------------------------------------------------------
    def _start(self, xs: Sequence[Any], srcs, dsts, names, outs: list | None, single: bool) -> Handle:
        if isinstance(xs, np.ndarray) or _is_torch(xs):
            raise TypeError("xs must be a sequence of arrays (use reshard_async for one array)")
        xs = list(xs)
        plan = self.plan_batch(srcs, dsts, names)
        if len(xs) != len(plan):
            raise MismatchError(f"the batch has {len(plan)} arrays but {len(xs)} inputs were passed")
        ins, results = [], []
        for i, (x, s, d) in enumerate(zip(xs, plan.srcs, plan.dsts)):
            torch_in = _is_torch(x)
            v = _torch_view(x, s, "input") if torch_in else x
            if type(v) is np.ndarray and v.dtype.char == "E":  # ml_dtypes' bfloat16: its bits
                v = v.view(np.uint16)
            ins.append(v)
            if outs is None:
                shape = self.local_shape(d, target=True)
                if torch_in:
                    import torch

                    o = torch.empty(shape, dtype=torch_dtype(d.dtype))
                elif type(x) is np.ndarray and x.dtype == numpy_dtype(d.dtype):
                    o = np.empty(shape, x.dtype)
                else:
                    o = np.empty(shape, numpy_dtype(d.dtype))
                results.append(o)
            else:
                results.append(outs[i])
        raw_outs = []
        for o, d in zip(results, plan.dsts):
            if _is_torch(o):
                if not o.is_contiguous():
                    raise MismatchError("an output tensor is not contiguous; the result is written in place")
                o = _torch_view(o, d, "output")
            elif type(o) is np.ndarray:
                if not o.flags.writeable:
                    raise MismatchError("an output array is read-only")
                if o.dtype.char == "E":
                    o = o.view(np.uint16)
            raw_outs.append(o)
        box = self._c.start(plan, ins, raw_outs)  # collective; MismatchError on every rank
        return Handle(box, results, _guard(xs), _watch(xs), single)

    def reshard_batch_async(self, xs: Sequence[Any], srcs: Sequence[Type | str], dsts: Sequence[Type | str],
                            names: Sequence[str] | None = None) -> Handle:
        """Starts moving array i (this rank's shard xs[i] of srcs[i]) to dsts[i], all arrays in
        one plan; returns a Handle whose wait() gives the new shards (NumPy arrays, or torch
        tensors for torch inputs). Collective over the communicator."""
        return self._start(xs, srcs, dsts, names, None, False)

    def reshard_batch(self, xs: Sequence[Any], srcs: Sequence[Type | str], dsts: Sequence[Type | str],
                      names: Sequence[str] | None = None) -> list:
        """reshard_batch_async(...).wait(): the new shards, in order."""
        return self._start(xs, srcs, dsts, names, None, False).wait()

    def reshard_batch_into(self, xs: Sequence[Any], outs: Sequence[Any], srcs: Sequence[Type | str],
                           dsts: Sequence[Type | str], names: Sequence[str] | None = None) -> list:
        """Like reshard_batch, into `outs` (writable C-contiguous arrays of the targets' local
        shapes): no allocation, for loops that move the same arrays every step."""
        outs = list(outs)
        if len(outs) != len(list(dsts)):
            raise MismatchError(f"{len(outs)} outputs for {len(list(dsts))} target types")
        return self._start(xs, srcs, dsts, names, outs, False).wait()

    def reshard_async(self, x: Any, src: Type | str, dst: Type | str) -> Handle:
        """One array to a type on the target mesh, asynchronously; wait() gives the new shard."""
        return self._start([x], [src], [dst], None, None, True)

    def reshard(self, x: Any, src: Type | str, dst: Type | str) -> Any:
        """One array to a type on the target mesh: this rank's new shard."""
        return self._start([x], [src], [dst], None, None, True).wait()

    # -- checks -----------------------------------------------------------------------------
    def index_array(self, t: Type | str) -> np.ndarray:
        """This rank's shard of source type `t` filled as `reshard run --fill index` fills it."""
        t = self.src_type(t)
        out = np.empty(self.local_shape(t), numpy_dtype(t.dtype))
        self._c.fill_index_src(t, out.view(np.uint16) if out.dtype.char == "E" else out)
        return out

    def count_index_mismatches(self, plan: BatchPlan, i: int, out: Any) -> int:
        """Elements of array i's target, over all ranks, that differ from the index fill of its
        source (collective over the communicator)."""
        d = plan.dsts[i]
        if _is_torch(out):
            out = _torch_view(out, d, "input")
        elif type(out) is np.ndarray and out.dtype.char == "E":
            out = out.view(np.uint16)
        return self._c.count_index_mismatches(plan, i, out)

    def __repr__(self) -> str:
        return f"<reshard.XContext {self.src_mesh} -> {self.dst_mesh} rank={self.rank}>"


def plan_batch(src_mesh: Mesh | str, dst_mesh: Mesh | str, srcs: Sequence[Type | str], dsts: Sequence[Type | str],
               names: Sequence[str] | None = None, *, memory_cap: int = 0, verify: bool = False) -> BatchPlan:
    """One plan for several arrays from src_mesh to dst_mesh (symbolic: no data, no MPI).
    verify: run it on the simulator (every world rank, every element checked)."""
    sm = src_mesh if isinstance(src_mesh, Mesh) else Mesh(src_mesh)
    dm = dst_mesh if isinstance(dst_mesh, Mesh) else Mesh(dst_mesh)
    arrays = [(n, s if type(s) is Type else Type(s, sm), d if type(d) is Type else Type(d, dm))
              for n, s, d in _named(srcs, dsts, names)]
    return _core.plan_batch(sm, dm, arrays, memory_cap, verify)
