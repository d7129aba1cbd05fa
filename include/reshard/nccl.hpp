#pragma once
// The NCCL backend (docs/design.md 4): comm.hpp's Communicator and Group over NCCL communicators,
// on device memory, stream-ordered. Link reshard::nccl (built when CUDA, NCCL and MPI are
// found; it defines RESHARD_HAVE_NCCL=1 for its users).
//
//   MPI_Init(&argc, &argv);
//   reshard::Context ctx(mesh);                          // the mesh's ranks over MPI
//   reshard::select_local_cuda_device(ctx.comm());       // one GPU per rank on each node
//   void* stream = reshard::stream_create();             // device_memory.hpp
//   auto nccl = reshard::make_nccl_communicator(ctx.comm(), mesh, stream);   // collective
//   reshard::ExecOptions o;
//   o.memory = reshard::Memory::device;
//   o.stream = stream;
//   reshard::Executor exec(*nccl, o);
//   exec.execute(*plan, d_in, in_bytes, d_out, out_bytes);   // device pointers
//
// World and groups: the world communicator is built over MPI (ncclGetUniqueId on rank 0,
// MPI_Bcast, ncclCommInitRankConfig); a group over an axis list is ncclCommSplit of the world
// with color = the group's lowest device (unique to the coordinates outside the axes) and key =
// the device's position in route.hpp's group_of() order, created on first use and cached.
//
// Calls: every Group operation is enqueued on the communicator's stream and returns without
// waiting (stream-ordered, like NCCL itself); synchronize() waits for all of it. Buffers are
// device memory; host pointers are also accepted (they go through a device bounce buffer and
// the call then waits), which is how check_agreement()'s small control messages travel.
//  - allgatherv: ncclAllGather when every member contributes the same count (straight into the
//    receive buffer when the segments lie back to back in rank order, else through a scratch
//    buffer and one copy per segment); otherwise grouped ncclSend/ncclRecv.
//  - alltoallv, exchange: grouped ncclSend/ncclRecv (bytes; zero-count messages are skipped on
//    both sides), the segment to oneself as one device-to-device copy.
//  - reduce_scatter: ncclReduceScatter when all counts are equal, else grouped send/recv into
//    scratch and a device reduction in group order (as the simulator reduces).
//  - allreduce: ncclAllReduce; f16 and bf16 are reduced natively by NCCL, i8 and u8 too. i16 has
//    no NCCL type: every member's array is sent to every other (grouped send/recv) and reduced
//    on the device in group order (device_reduce_into, wrapping like the host kernels).
//  - barrier: a one-element all-reduce, then synchronize().
// The backend keeps two device buffers of its own (bounce and scratch), grown on demand and
// freed with it; they are not counted in the executor's workspace.
//
// Errors: every NCCL and CUDA result is checked. The communicators are non-blocking
// (ncclConfig_t::blocking = 0): calls that return ncclInProgress are polled with
// ncclCommGetAsyncError, and synchronize() polls the stream (cudaStreamQuery) and every
// communicator's asynchronous error. Anything that fails, or does not finish within the timeout
// (NcclOptions::timeout_s; default $RESHARD_TIMEOUT_S, else 300 s), aborts every NCCL
// communicator of this object (ncclCommAbort) and throws reshard::Error naming the operation:
// nothing hangs. After that every call throws; destroy the object (and usually end the job:
// the peers see their own timeout or error).
//
// Collective: make_nccl_communicator() (over every rank of `devices`), the first group() of
// each axis list (over every device), every Group operation (over the group) and destruction
// (ncclCommFinalize). Thread safety: none; one thread at a time per communicator, with the
// CUDA device it was created on current.
#include <memory>
#include <string>

#include <mpi.h>

#include "reshard/comm.hpp"
#include "reshard/mesh.hpp"

namespace reshard {

struct NcclOptions {
  // Seconds a call or synchronize() may wait before the communicators are aborted, as the MPI
  // backend's ExecOptions::timeout_s: < 0 is $RESHARD_TIMEOUT_S if set, else 300; 0 waits
  // for ever.
  double timeout_s = -1;
};

class NcclCommunicator : public Communicator {
 public:
  // Waits until everything enqueued on the stream so far has run, polling for NCCL errors;
  // throws (after aborting) on an error or the timeout. Local.
  void synchronize() override = 0;
  void* stream() const override = 0;  // the cudaStream_t every operation is enqueued on
  virtual double timeout_s() const = 0;
  // True once an error or timeout aborted the communicators.
  virtual bool aborted() const = 0;
};

// `devices`: an MPI communicator whose ranks are the mesh's devices (rank = device number), as
// Context::comm() gives; it is only used during the call. The current CUDA device becomes the
// communicator's device. `stream`: a cudaStream_t (nullptr: the legacy default stream, which
// synchronizes with everything; prefer a stream of your own). Collective over `devices`:
// throws MismatchError on every rank when the ranks pass different meshes or the mesh's size
// is not the communicator's.
std::unique_ptr<NcclCommunicator> make_nccl_communicator(MPI_Comm devices, const Mesh& mesh, void* stream,
                                                         NcclOptions opts = {});

// Makes this rank's GPU current: the node-local rank (MPI_Comm_split_type over `comm`) modulo
// the number of visible devices. Returns the device number. Collective over `comm`. Throws
// when there is no usable CUDA device.
int select_local_cuda_device(MPI_Comm comm);

// NCCL's version as "2.28.9" (the library loaded at run time).
std::string nccl_version();

}  // namespace reshard
