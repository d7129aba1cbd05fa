// The NCCL backend (reshard/nccl.hpp): world and group communicators, the collectives over
// device buffers, and the error handling that never waits forever.
#include "nccl_comm.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "mpi_comm.hpp"  // the MPI backend's check() and MpiGroup, for the set-up's agreement
#include "watchdog.hpp"  // resolve_timeout: the same timeout convention as the MPI backend
#include "reshard/device_kernels.hpp"
#include "reshard/error.hpp"
#include "reshard/route.hpp"

namespace reshard {

namespace nccl {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string last_error(ncclComm_t comm) {
  const char* s = comm ? ncclGetLastError(comm) : nullptr;
  return s && *s ? fmt::format(" ({})", s) : std::string();
}

std::size_t bytes_of(std::int64_t count, std::size_t elem) {
  if (count < 0) throw Error(fmt::format("a negative element count ({})", count));
  return static_cast<std::size_t>(count) * elem;
}

// Host buffers given to a group operation: their data goes through the owner's device bounce
// buffer. Register every buffer (add), map() once, take the device addresses (at), enqueue the
// operation, then finish(): written host buffers are copied back and the stream waited for.
// Device buffers pass through untouched; without host buffers finish() does nothing.
class HostStage {
 public:
  explicit HostStage(NcclComm& owner) : owner_(owner) {}

  int add(const void* p, std::size_t bytes, bool written) {
    Region r{static_cast<const std::byte*>(p), bytes, 0, written, !p || bytes == 0 || is_device(p), -1};
    for (std::size_t k = 0; k < regions_.size() && !r.direct; ++k)
      if (regions_[k].host == r.host && regions_[k].alias < 0 && regions_[k].bytes >= bytes) {
        r.alias = static_cast<int>(k);  // the same host buffer (in-place operations)
        regions_[k].written = regions_[k].written || written;
      }
    if (!r.direct && r.alias < 0) {
      r.offset = total_;
      total_ += (bytes + 255) / 256 * 256;
    }
    regions_.push_back(r);
    return static_cast<int>(regions_.size()) - 1;
  }

  void map() {
    if (total_ == 0) return;
    base_ = owner_.bounce(total_);
    for (const Region& r : regions_)  // written regions too: gaps between segments stay as they were
      if (!r.direct && r.alias < 0)
        owner_.check_cuda(cudaMemcpyAsync(base_ + r.offset, r.host, r.bytes, cudaMemcpyHostToDevice,
                                          owner_.cuda_stream()),
                          "cudaMemcpyAsync to the bounce buffer");
  }

  std::byte* at(int k) const {
    const Region& r = regions_[k];
    if (r.direct) return const_cast<std::byte*>(r.host);
    const Region& owner = r.alias >= 0 ? regions_[r.alias] : r;
    return base_ + owner.offset;
  }

  void finish(const char* what) {
    if (total_ == 0) return;
    for (const Region& r : regions_)
      if (!r.direct && r.alias < 0 && r.written)
        owner_.check_cuda(cudaMemcpyAsync(const_cast<std::byte*>(r.host), base_ + r.offset, r.bytes,
                                          cudaMemcpyDeviceToHost, owner_.cuda_stream()),
                          "cudaMemcpyAsync from the bounce buffer");
    owner_.wait(what);
  }

 private:
  static bool is_device(const void* p) {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  }

  struct Region {
    const std::byte* host;
    std::size_t bytes, offset;
    bool written, direct;
    int alias;
  };
  NcclComm& owner_;
  std::vector<Region> regions_;
  std::size_t total_ = 0;
  std::byte* base_ = nullptr;
};

// The end of the segments' reach, in elements.
std::int64_t extent_of(std::span<const Segment> segs) {
  std::int64_t e = 0;
  for (const Segment& s : segs)
    if (s.count) e = std::max(e, s.offset + s.count);
  return e;
}

}  // namespace

bool nccl_type_of(DType t, ncclDataType_t& out) {
  switch (t) {
    case DType::f64: out = ncclFloat64; return true;
    case DType::f32: out = ncclFloat32; return true;
    case DType::f16: out = ncclFloat16; return true;
    case DType::bf16: out = ncclBfloat16; return true;
    case DType::i64: out = ncclInt64; return true;
    case DType::i32: out = ncclInt32; return true;
    case DType::i8: out = ncclInt8; return true;
    case DType::u8: out = ncclUint8; return true;
    case DType::i16: return false;
  }
  return false;
}

ncclRedOp_t nccl_op_of(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::prod: return ncclProd;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
    case ReduceOp::none: break;
  }
  throw Error("a reduction needs an op");
}

// ---------------------------------------------------------------------------------------------
// NcclGroup

NcclGroup::NcclGroup(NcclComm& owner, ncclComm_t comm, int size, int rank, std::string name)
    : owner_(owner), comm_(comm), size_(size), rank_(rank), name_(std::move(name)) {}

void NcclGroup::check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) owner_.complete(comm_, r, fmt::format("{} on the {}", what, name_));
}

template <class F>
void NcclGroup::grouped(const char* what, F&& post) {
  check(ncclGroupStart(), what);
  try {
    post();
  } catch (...) {
    (void)ncclGroupEnd();  // leave no group open on this thread; the communicators are aborted
    throw;
  }
  check(ncclGroupEnd(), what);
}

void NcclGroup::alltoallv(const void* send, std::span<const Segment> send_segs, void* recv,
                          std::span<const Segment> recv_segs, DType t) {
  owner_.ensure_alive("alltoallv");
  if (static_cast<int>(send_segs.size()) != size_ || static_cast<int>(recv_segs.size()) != size_)
    throw Error(fmt::format("alltoallv: {} and {} segments for a group of {}", send_segs.size(), recv_segs.size(), size_));
  const std::size_t elem = size_of(t);
  HostStage st(owner_);
  const int s = st.add(send, bytes_of(extent_of(send_segs), elem), false);
  const int r = st.add(recv, bytes_of(extent_of(recv_segs), elem), true);
  st.map();
  alltoallv_device(st.at(s), send_segs, st.at(r), recv_segs, elem);
  st.finish("alltoallv");
}

void NcclGroup::alltoallv_device(const std::byte* send, std::span<const Segment> send_segs, std::byte* recv,
                                 std::span<const Segment> recv_segs, std::size_t elem) {
  const Segment& mine_out = send_segs[rank_];
  const Segment& mine_in = recv_segs[rank_];
  if (mine_out.count != mine_in.count)
    throw Error(fmt::format("alltoallv: {} elements to itself but {} expected", mine_out.count, mine_in.count));
  owner_.copy(recv + mine_in.offset * elem, send + mine_out.offset * elem, bytes_of(mine_in.count, elem), "alltoallv");
  if (size_ == 1) return;  // nothing else moves
  cudaStream_t stream = owner_.cuda_stream();
  grouped("alltoallv", [&] {
    for (int i = 0; i < size_; ++i) {
      if (i == rank_) continue;
      if (recv_segs[i].count)
        check(ncclRecv(recv + recv_segs[i].offset * elem, bytes_of(recv_segs[i].count, elem), ncclUint8, i, comm_,
                       stream),
              "ncclRecv");
      if (send_segs[i].count)
        check(ncclSend(send + send_segs[i].offset * elem, bytes_of(send_segs[i].count, elem), ncclUint8, i, comm_,
                       stream),
              "ncclSend");
    }
  });
}

void NcclGroup::allgatherv(const void* send, std::int64_t count, void* recv, std::span<const Segment> recv_segs,
                           DType t) {
  owner_.ensure_alive("allgatherv");
  if (static_cast<int>(recv_segs.size()) != size_)
    throw Error(fmt::format("allgatherv: {} segments for a group of {}", recv_segs.size(), size_));
  if (recv_segs[rank_].count != count)
    throw Error(fmt::format("allgatherv: sends {} elements, its own segment has {}", count, recv_segs[rank_].count));
  const std::size_t elem = size_of(t);
  HostStage st(owner_);
  const int s = st.add(send, bytes_of(count, elem), false);
  const int r = st.add(recv, bytes_of(extent_of(recv_segs), elem), true);
  st.map();
  allgatherv_device(st.at(s), count, st.at(r), recv_segs, elem);
  st.finish("allgatherv");
}

void NcclGroup::allgatherv_device(const std::byte* send, std::int64_t count, std::byte* recv,
                                  std::span<const Segment> recv_segs, std::size_t elem) {
  cudaStream_t stream = owner_.cuda_stream();
  // The counts are the same on every member, so every member takes the same branch.
  const std::int64_t n = recv_segs[0].count;
  const bool equal = std::all_of(recv_segs.begin(), recv_segs.end(), [&](const Segment& s) { return s.count == n; });
  if (equal) {
    if (n == 0) return;
    const std::size_t bytes = bytes_of(n, elem);
    bool packed = true;
    for (int i = 0; i < size_; ++i) packed = packed && recv_segs[i].offset == recv_segs[0].offset + i * n;
    if (packed) {
      check(ncclAllGather(send, recv + recv_segs[0].offset * elem, bytes, ncclUint8, comm_, stream), "ncclAllGather");
      return;
    }
    std::byte* tmp = owner_.scratch(bytes * static_cast<std::size_t>(size_));
    check(ncclAllGather(send, tmp, bytes, ncclUint8, comm_, stream), "ncclAllGather");
    for (int i = 0; i < size_; ++i) owner_.copy(recv + recv_segs[i].offset * elem, tmp + bytes * i, bytes, "allgatherv");
    return;
  }
  // Uneven: an all-to-all that sends the same `count` elements to everyone.
  const std::vector<Segment> send_segs(static_cast<std::size_t>(size_), Segment{0, count});
  alltoallv_device(send, send_segs, recv, recv_segs, elem);
}

void NcclGroup::reduce_scatter(const void* send, void* recv, std::span<const std::int64_t> counts, DType t,
                               ReduceOp op) {
  owner_.ensure_alive("reduce_scatter");
  if (static_cast<int>(counts.size()) != size_)
    throw Error(fmt::format("reduce_scatter: {} counts for a group of {}", counts.size(), size_));
  std::int64_t total = 0;
  for (std::int64_t c : counts) total += c;
  const std::size_t elem = size_of(t);
  HostStage st(owner_);
  const int s = st.add(send, bytes_of(total, elem), false);
  const int r = st.add(recv, bytes_of(counts[rank_], elem), true);
  st.map();
  reduce_scatter_device(st.at(s), st.at(r), counts, t, op);
  st.finish("reduce_scatter");
}

void NcclGroup::reduce_scatter_device(const std::byte* send, std::byte* recv, std::span<const std::int64_t> counts,
                                      DType t, ReduceOp op) {
  std::vector<std::int64_t> offsets(size_);
  std::int64_t at = 0;
  for (int i = 0; i < size_; ++i) offsets[i] = at, at += counts[i];
  ncclDataType_t nt{};
  const bool equal = std::all_of(counts.begin(), counts.end(), [&](std::int64_t c) { return c == counts[0]; });
  if (equal && nccl_type_of(t, nt)) {
    if (counts[0] == 0) return;
    check(ncclReduceScatter(send, recv, static_cast<std::size_t>(counts[0]), nt, nccl_op_of(op), comm_,
                            owner_.cuda_stream()),
          "ncclReduceScatter");
    return;
  }
  reduce_p2p(send, offsets, counts, recv, t, op, "reduce_scatter");
}

void NcclGroup::allreduce(const void* send, void* recv, std::int64_t count, DType t, ReduceOp op) {
  owner_.ensure_alive("allreduce");
  const std::size_t bytes = bytes_of(count, size_of(t));
  HostStage st(owner_);
  const int s = st.add(send, bytes, false);
  const int r = st.add(recv, bytes, true);
  st.map();
  allreduce_device(st.at(s), st.at(r), count, t, op);
  st.finish("allreduce");
}

void NcclGroup::allreduce_device(const std::byte* send, std::byte* recv, std::int64_t count, DType t,
                                 ReduceOp op) {
  if (count == 0) return;
  ncclDataType_t nt{};
  if (nccl_type_of(t, nt)) {
    check(ncclAllReduce(send, recv, static_cast<std::size_t>(count), nt, nccl_op_of(op), comm_, owner_.cuda_stream()),
          "ncclAllReduce");
    return;
  }
  // i16: every member's whole array to every other, reduced in group order.
  std::vector<std::int64_t> offsets(size_, 0), counts(size_, count);
  reduce_p2p(send, offsets, counts, recv, t, op, "allreduce");
}

void NcclGroup::reduce_p2p(const std::byte* send, std::span<const std::int64_t> offsets,
                           std::span<const std::int64_t> counts, std::byte* recv, DType t, ReduceOp op,
                           const char* what) {
  if (op == ReduceOp::none) throw Error(fmt::format("{}: a reduction needs an op", what));
  const std::size_t elem = size_of(t);
  const std::int64_t n = counts[rank_];
  const std::size_t part = bytes_of(n, elem);
  cudaStream_t stream = owner_.cuda_stream();
  // Slot i holds member i's contribution to this member's part (this member's own included,
  // so that recv may alias send).
  std::byte* slots = owner_.scratch(std::max<std::size_t>(part * static_cast<std::size_t>(size_), 1));
  owner_.copy(slots + part * rank_, send + offsets[rank_] * elem, part, what);
  grouped(what, [&] {
    for (int i = 0; i < size_; ++i) {
      if (i == rank_) continue;
      if (n) check(ncclRecv(slots + part * i, part, ncclUint8, i, comm_, stream), "ncclRecv");
      if (counts[i])
        check(ncclSend(send + offsets[i] * elem, bytes_of(counts[i], elem), ncclUint8, i, comm_, stream), "ncclSend");
    }
  });
  if (!n) return;
  device_reduce_slots(recv, slots, n, size_, t, op, stream);  // one launch for every member
}

void NcclGroup::exchange(std::span<const SendMsg> sends, std::span<const RecvMsg> recvs, DType t) {
  owner_.ensure_alive("exchange");
  const std::size_t elem = size_of(t);
  std::vector<int> peers_out, peers_in;
  for (const SendMsg& m : sends) {
    if (m.peer == rank_) throw Error("exchange: a send to oneself");
    if (m.peer < 0 || m.peer >= size_) throw Error(fmt::format("exchange: a send to rank {} of {}", m.peer, size_));
    peers_out.push_back(m.peer);
  }
  for (const RecvMsg& m : recvs) {
    if (m.peer == rank_) throw Error("exchange: a receive from oneself");
    if (m.peer < 0 || m.peer >= size_) throw Error(fmt::format("exchange: a receive from rank {} of {}", m.peer, size_));
    peers_in.push_back(m.peer);
  }
  for (auto* peers : {&peers_out, &peers_in}) {
    std::sort(peers->begin(), peers->end());
    if (std::adjacent_find(peers->begin(), peers->end()) != peers->end())
      throw Error("exchange: two messages with one peer in one direction");
  }
  HostStage st(owner_);
  std::vector<int> s, r;
  for (const SendMsg& m : sends) s.push_back(st.add(m.data, bytes_of(m.count, elem), false));
  for (const RecvMsg& m : recvs) r.push_back(st.add(m.data, bytes_of(m.count, elem), true));
  st.map();
  cudaStream_t stream = owner_.cuda_stream();
  if (!sends.empty() || !recvs.empty())
    grouped("exchange", [&] {
      for (std::size_t k = 0; k < recvs.size(); ++k)
        if (recvs[k].count)
          check(ncclRecv(st.at(r[k]), bytes_of(recvs[k].count, elem), ncclUint8, recvs[k].peer, comm_, stream),
                "ncclRecv");
      for (std::size_t k = 0; k < sends.size(); ++k)
        if (sends[k].count)
          check(ncclSend(st.at(s[k]), bytes_of(sends[k].count, elem), ncclUint8, sends[k].peer, comm_, stream),
                "ncclSend");
    });
  st.finish("exchange");
}

void NcclGroup::barrier() {
  owner_.ensure_alive("barrier");
  if (size_ > 1) {
    std::byte* one = owner_.scratch(sizeof(float));
    check(ncclAllReduce(one, one, 1, ncclFloat32, ncclSum, comm_, owner_.cuda_stream()), "ncclAllReduce (barrier)");
  }
  owner_.wait("barrier");
}

// ---------------------------------------------------------------------------------------------
// NcclComm

NcclComm::NcclComm(MPI_Comm devices, Mesh mesh, cudaStream_t stream, double timeout_s)
    : mesh_(std::move(mesh)), stream_(stream), timeout_s_(timeout_s) {
  mpi::MpiGroup all(devices, false);
  std::string err;
  if (all.size() != mesh_.num_devices())
    err = fmt::format("mesh {} has {} devices but the communicator has {} ranks", mesh_, mesh_.num_devices(),
                      all.size());
  else if (cudaError_t e = cudaGetDevice(&cuda_device_); e != cudaSuccess) {
    (void)cudaGetLastError();
    err = fmt::format("no usable CUDA device on rank {}: {}", all.rank(), cudaGetErrorString(e));
  }
  check_agreement(all, "the mesh", fnv1a(mesh_.to_string()), fmt::format("mesh {}", mesh_), err);
  ncclUniqueId id{};
  err.clear();
  if (all.rank() == 0)
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess)
      err = fmt::format("ncclGetUniqueId failed: {}", ncclGetErrorString(r));
  check_agreement(all, "the NCCL unique id", 0, "", err);
  mpi::check(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, devices), "MPI_Bcast of the NCCL unique id");

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // calls return at once; complete() and wait() poll with the timeout
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, all.size(), id, all.rank(), &config);
  world_ = std::make_unique<NcclGroup>(*this, comm, all.size(), all.rank(), "world");
  complete(comm, r, "ncclCommInitRankConfig");
}

NcclComm::~NcclComm() {
  if (!aborted_) {
    try {
      wait("destruction");
      std::vector<ncclComm_t> comms = live_comms();
      for (ncclComm_t c : comms) complete(c, ncclCommFinalize(c), "ncclCommFinalize");
      for (ncclComm_t c : comms) (void)ncclCommDestroy(c);
    } catch (...) {  // fail() aborted every communicator
    }
  }
  if (bounce_) (void)cudaFree(bounce_);
  if (scratch_) (void)cudaFree(scratch_);
}

std::vector<ncclComm_t> NcclComm::live_comms() const {
  std::vector<ncclComm_t> r;
  for (const auto& [axes, g] : groups_)
    if (g->comm_) r.push_back(g->comm_);
  if (world_ && world_->comm_) r.push_back(world_->comm_);
  return r;
}

void NcclComm::ensure_alive(const char* what) const {
  if (aborted_)
    throw Error(fmt::format("NCCL {}: the communicator was aborted after an earlier error ({})", what, abort_reason_));
}

Group& NcclComm::world() {
  ensure_alive("world");
  return *world_;
}

void NcclComm::abort_all() noexcept {
  for (ncclComm_t c : live_comms()) (void)ncclCommAbort(c);
  for (auto& [axes, g] : groups_) g->comm_ = nullptr;
  if (world_) world_->comm_ = nullptr;
  aborted_ = true;
}

void NcclComm::fail(const std::string& message) {
  if (!aborted_) {
    abort_reason_ = message;
    abort_all();
  }
  throw Error(message + "; the NCCL communicators were aborted");
}

void NcclComm::check_cuda(cudaError_t err, const std::string& what) {
  if (err == cudaSuccess) return;
  (void)cudaGetLastError();
  fail(fmt::format("{}: {} ({})", what, cudaGetErrorName(err), cudaGetErrorString(err)));
}

void NcclComm::copy(void* dst, const void* src, std::size_t bytes, const char* what) {
  if (bytes && dst != src)
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_), fmt::format("{}: cudaMemcpyAsync", what));
}

void NcclComm::complete(ncclComm_t comm, ncclResult_t r, const std::string& what) {
  const Clock::time_point t0 = Clock::now();
  while (r == ncclInProgress) {
    ncclResult_t state = ncclSuccess;
    if (ncclResult_t q = ncclCommGetAsyncError(comm, &state); q != ncclSuccess) {
      r = q;
      break;
    }
    r = state;
    if (r != ncclInProgress) break;
    if (timeout_s_ > 0 && seconds_since(t0) > timeout_s_)
      fail(fmt::format("NCCL {}: still in progress after {} s (timeout, RESHARD_TIMEOUT_S)", what, timeout_s_));
    std::this_thread::yield();
  }
  if (r != ncclSuccess) fail(fmt::format("NCCL {} failed: {}{}", what, ncclGetErrorString(r), last_error(comm)));
}

void NcclComm::wait(const std::string& what) {
  ensure_alive(what.c_str());
  const Clock::time_point t0 = Clock::now();
  for (unsigned spin = 0;; ++spin) {
    const cudaError_t e = cudaStreamQuery(stream_);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) check_cuda(e, fmt::format("NCCL {}: the stream failed", what));
    for (ncclComm_t c : live_comms()) {
      ncclResult_t state = ncclSuccess;
      ncclResult_t q = ncclCommGetAsyncError(c, &state);
      if (q != ncclSuccess) state = q;
      if (state != ncclSuccess && state != ncclInProgress)
        fail(fmt::format("NCCL {}: asynchronous error {}{}", what, ncclGetErrorString(state), last_error(c)));
    }
    if (timeout_s_ > 0 && seconds_since(t0) > timeout_s_)
      fail(fmt::format("NCCL {}: the stream did not finish within {} s (timeout, RESHARD_TIMEOUT_S): a peer "
                       "may have failed or not joined the operation",
                       what, timeout_s_));
    if (spin > 1000) std::this_thread::yield();
  }
  for (ncclComm_t c : live_comms()) {  // an error in the last operation, seen after it ended
    ncclResult_t state = ncclSuccess;
    if (ncclCommGetAsyncError(c, &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress)
      fail(fmt::format("NCCL {}: asynchronous error {}{}", what, ncclGetErrorString(state), last_error(c)));
  }
}

std::byte* NcclComm::grow(void*& buf, std::size_t& have, std::size_t want, const char* what) {
  if (want <= have) return static_cast<std::byte*>(buf);
  wait(fmt::format("growing the {}", what));  // work in flight may still use the old buffer
  if (buf) check_cuda(cudaFree(buf), fmt::format("cudaFree of the {}", what));
  buf = nullptr;
  have = 0;
  const std::size_t bytes = std::max<std::size_t>(want, 4096);
  check_cuda(cudaMalloc(&buf, bytes), fmt::format("cudaMalloc of the {} ({} bytes)", what, bytes));
  have = bytes;
  return static_cast<std::byte*>(buf);
}

Group& NcclComm::group(const std::vector<std::string>& axes) {
  ensure_alive("group");
  auto it = groups_.find(axes);
  if (it != groups_.end()) return *it->second;
  const std::vector<int> members = group_of(mesh_, axes, device());
  // color: the group's lowest device (unique to its coordinates outside the axes); key: the
  // position in group_of() order, which NCCL then uses as the rank.
  const int color = members.front();
  const int key = static_cast<int>(std::find(members.begin(), members.end(), device()) - members.begin());
  const std::string name = fmt::format("group {{{}}}", fmt::join(axes, ","));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommSplit(world_->comm_, color, key, &comm, &config);
  auto g = std::make_unique<NcclGroup>(*this, comm, static_cast<int>(members.size()), key, name);
  NcclGroup& made = *groups_.emplace(axes, std::move(g)).first->second;  // aborted with the rest on failure
  if (r == ncclInProgress) {
    complete(world_->comm_, ncclInProgress, "ncclCommSplit (parent)");
    complete(comm, ncclInProgress, "ncclCommSplit for the " + name);
  } else {
    complete(comm, r, "ncclCommSplit for the " + name);
  }
  int rank = -1, size = -1;
  complete(comm, ncclCommUserRank(comm, &rank), "ncclCommUserRank");
  complete(comm, ncclCommCount(comm, &size), "ncclCommCount");
  if (rank != key || size != static_cast<int>(members.size()))
    fail(fmt::format("{}: NCCL ranked this device {} of {}, expected {} of {}", name, rank, size, key, members.size()));
  return made;
}

}  // namespace nccl

// ---------------------------------------------------------------------------------------------
// Public entry points

std::unique_ptr<NcclCommunicator> make_nccl_communicator(MPI_Comm devices, const Mesh& mesh, void* stream,
                                                         NcclOptions opts) {
  const double timeout = mpi::resolve_timeout(opts.timeout_s);  // one convention for both backends
  return std::make_unique<nccl::NcclComm>(devices, mesh, static_cast<cudaStream_t>(stream), timeout);
}

int select_local_cuda_device(MPI_Comm comm) {
  int rank = 0;
  mpi::check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  MPI_Comm local = MPI_COMM_NULL;
  mpi::check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local), "MPI_Comm_split_type");
  int local_rank = 0;
  const int rc = MPI_Comm_rank(local, &local_rank);
  MPI_Comm_free(&local);
  mpi::check(rc, "MPI_Comm_rank");
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    throw Error(fmt::format("no usable CUDA device on rank {}: {}", rank,
                            e != cudaSuccess ? cudaGetErrorString(e) : "none present"));
  }
  const int device = local_rank % count;
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    (void)cudaGetLastError();
    throw Error(fmt::format("cudaSetDevice({}) on rank {}: {}", device, rank, cudaGetErrorString(e)));
  }
  return device;
}

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return fmt::format("{}.{}.{}", v / 10000, v / 100 % 100, v % 100);
}

}  // namespace reshard
