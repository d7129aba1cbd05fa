#pragma once
// The NCCL backend's classes (reshard/nccl.hpp documents the behaviour). One NcclComm owns the
// world and group ncclComm_t's, the stream, the timeout, and the device buffers every group
// shares; NcclGroup is one ncclComm_t seen through comm.hpp's Group.
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "reshard/nccl.hpp"

namespace reshard::nccl {

class NcclComm;

class NcclGroup final : public Group {
 public:
  NcclGroup(NcclComm& owner, ncclComm_t comm, int size, int rank, std::string name);
  int size() const override { return size_; }
  int rank() const override { return rank_; }
  ncclComm_t comm() const { return comm_; }
  const std::string& name() const { return name_; }

  void alltoallv(const void* send, std::span<const Segment> send_segs, void* recv,
                 std::span<const Segment> recv_segs, DType t) override;
  void allgatherv(const void* send, std::int64_t count, void* recv, std::span<const Segment> recv_segs,
                  DType t) override;
  void reduce_scatter(const void* send, void* recv, std::span<const std::int64_t> counts, DType t,
                      ReduceOp op) override;
  void allreduce(const void* send, void* recv, std::int64_t count, DType t, ReduceOp op) override;
  void exchange(std::span<const SendMsg> sends, std::span<const RecvMsg> recvs, DType t) override;
  void barrier() override;

 private:
  friend class NcclComm;
  // The operations on device pointers (the public ones stage host pointers first).
  void alltoallv_device(const std::byte* send, std::span<const Segment> send_segs, std::byte* recv,
                        std::span<const Segment> recv_segs, std::size_t elem);
  void allgatherv_device(const std::byte* send, std::int64_t count, std::byte* recv,
                         std::span<const Segment> recv_segs, std::size_t elem);
  void reduce_scatter_device(const std::byte* send, std::byte* recv, std::span<const std::int64_t> counts,
                             DType t, ReduceOp op);
  void allreduce_device(const std::byte* send, std::byte* recv, std::int64_t count, DType t, ReduceOp op);
  // The fallback of the reductions: member i gets counts[i] elements at send + offsets[i] from
  // every member (grouped send/recv into scratch slots by rank), reduced in rank order into
  // `recv` (which may alias `send`).
  void reduce_p2p(const std::byte* send, std::span<const std::int64_t> offsets,
                  std::span<const std::int64_t> counts, std::byte* recv, DType t, ReduceOp op, const char* what);
  // Checks a call's result on this group's communicator (polls while in progress).
  void check(ncclResult_t r, const char* what);
  // ncclGroupStart/End around `post` (which issues sends and receives), checked.
  template <class F>
  void grouped(const char* what, F&& post);

  NcclComm& owner_;
  ncclComm_t comm_;
  int size_, rank_;
  std::string name_;  // "world" or "group {x,y}", for messages
};

class NcclComm final : public NcclCommunicator {
 public:
  NcclComm(MPI_Comm devices, Mesh mesh, cudaStream_t stream, double timeout_s);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  std::string_view backend() const override { return "nccl"; }
  Memory memory() const override { return Memory::device; }
  const Mesh& mesh() const override { return mesh_; }
  int device() const override { return world_->rank(); }
  Group& world() override;
  Group& group(const std::vector<std::string>& axes) override;
  void synchronize() override { wait("synchronize"); }
  void* stream() const override { return stream_; }
  double timeout_s() const override { return timeout_s_; }
  bool aborted() const override { return aborted_; }

  // For the groups.
  cudaStream_t cuda_stream() const { return stream_; }
  // Throws if an earlier error aborted the communicators.
  void ensure_alive(const char* what) const;
  // Waits for the stream, polling every communicator's asynchronous error, until the
  // timeout; on failure aborts everything and throws naming `what`.
  void wait(const std::string& what);
  // After a call on `comm` returned `r`: polls while ncclInProgress (timeout), then fails
  // unless ncclSuccess.
  void complete(ncclComm_t comm, ncclResult_t r, const std::string& what);
  // Aborts every communicator and throws Error(message).
  [[noreturn]] void fail(const std::string& message);
  void check_cuda(cudaError_t err, const std::string& what);
  // Device-to-device cudaMemcpyAsync on the stream (nothing for 0 bytes), checked.
  void copy(void* dst, const void* src, std::size_t bytes, const char* what);
  // Device buffers of at least `bytes` (grown on demand: the stream is drained first).
  std::byte* bounce(std::size_t bytes) { return grow(bounce_, bounce_bytes_, bytes, "bounce buffer"); }
  std::byte* scratch(std::size_t bytes) { return grow(scratch_, scratch_bytes_, bytes, "scratch buffer"); }

 private:
  std::byte* grow(void*& buf, std::size_t& have, std::size_t want, const char* what);
  void abort_all() noexcept;
  std::vector<ncclComm_t> live_comms() const;

  Mesh mesh_;
  cudaStream_t stream_;
  double timeout_s_;
  int cuda_device_ = 0;
  std::unique_ptr<NcclGroup> world_;
  std::map<std::vector<std::string>, std::unique_ptr<NcclGroup>> groups_;
  void* bounce_ = nullptr;
  void* scratch_ = nullptr;
  std::size_t bounce_bytes_ = 0, scratch_bytes_ = 0;
  bool aborted_ = false;
  std::string abort_reason_;
};

// The NCCL type for reductions of t; false for i16 (none exists).
bool nccl_type_of(DType t, ncclDataType_t& out);
ncclRedOp_t nccl_op_of(ReduceOp op);

}  // namespace reshard::nccl
