#include "mpi_comm.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <climits>

#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"
#include "reshard/route.hpp"

namespace reshard::mpi {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(fmt::format("{} failed on rank {}: {}", what, world_rank(), std::string_view(msg, len)));
}

MPI_Datatype datatype_of(DType t) {
  switch (t) {
    case DType::f64: return MPI_DOUBLE;
    case DType::f32: return MPI_FLOAT;
    case DType::f16:
    case DType::bf16: return MPI_UINT16_T;
    case DType::i64: return MPI_INT64_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i16: return MPI_INT16_T;
    case DType::i8: return MPI_INT8_T;
    case DType::u8: return MPI_UINT8_T;
  }
  throw Error("unknown dtype");
}

namespace {

// MPI calls user ops as inout[i] = in[i] op inout[i]; reduce_into is the host kernels' (and
// the simulator's) arithmetic: float for the half formats, wrapping for integers.
template <DType T, ReduceOp Op>
void user_op(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce_into(inout, in, *len, T, Op);
}

template <DType T>
MPI_Op user_op_of(ReduceOp op) {
  // Created on first use (MPI is initialised by then); MPI_Finalize releases them.
  static const std::array<MPI_Op, 4> ops = [] {
    std::array<MPI_Op, 4> r{};
    check(MPI_Op_create(&user_op<T, ReduceOp::sum>, 1, &r[0]), "MPI_Op_create");
    check(MPI_Op_create(&user_op<T, ReduceOp::max>, 1, &r[1]), "MPI_Op_create");
    check(MPI_Op_create(&user_op<T, ReduceOp::min>, 1, &r[2]), "MPI_Op_create");
    check(MPI_Op_create(&user_op<T, ReduceOp::prod>, 1, &r[3]), "MPI_Op_create");
    return r;
  }();
  return ops[static_cast<int>(op) - static_cast<int>(ReduceOp::sum)];
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The group rank that exchange() request i talks to (receives come first, then sends).
int peer_of(int i, std::span<const Posted> recvs, std::span<const Posted> sends) {
  const int r = static_cast<int>(recvs.size());
  return i < r ? recvs[i].peer : sends[i - r].peer;
}

// The peer of the last receive among the k requests just completed, or -1.
int last_receive(const int* done, int k, std::span<const Posted> recvs) {
  int peer = -1;
  for (int i = 0; i < k; ++i)
    if (done[i] < static_cast<int>(recvs.size())) peer = recvs[done[i]].peer;
  return peer;
}

// No request of an exchange completed for the group's timeout: names the peers (world ranks)
// whose messages are pending and ends the job.
[[noreturn]] void exchange_timed_out(const MpiGroup& g, const std::vector<MPI_Request>& requests,
                                     std::span<const Posted> recvs, std::span<const Posted> sends, int last_peer,
                                     Clock::time_point last) {
  std::vector<int> world = world_ranks(g.comm(), g.size()), from, to;
  for (int i = 0; i < static_cast<int>(requests.size()); ++i)
    if (requests[i] != MPI_REQUEST_NULL)
      (i < static_cast<int>(recvs.size()) ? from : to).push_back(world[peer_of(i, recvs, sends)]);
  std::string pending;
  if (!from.empty()) pending = fmt::format("nothing received from rank {}", fmt::join(from, ", "));
  if (!to.empty()) pending += fmt::format("{}sends to rank {} not complete", from.empty() ? "" : "; ", fmt::join(to, ", "));
  std::string heard = last_peer < 0 ? last_heard()
                                    : fmt::format("rank {}, {:.1f} s ago", world[last_peer], seconds_since(last));
  end_job(fmt::format("reshard: rank {}: exchange (MPI_Isend/MPI_Irecv) on group {} made no progress for {} s; "
                      "a peer may have failed (waiting: {}; last heard: {})",
                      world_rank(), g.name(), g.timeout_s(), pending, heard));
}

int to_int(std::int64_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw Error(fmt::format("{} of {} elements does not fit MPI's int counts; use a larger "
                            "mesh or a smaller array", what, v));
  return static_cast<int>(v);
}

}  // namespace

MPI_Op op_of(DType t, ReduceOp op) {
  if (op == ReduceOp::none) throw Error("a reduction needs an op");
  switch (t) {
    case DType::f16: return user_op_of<DType::f16>(op);
    case DType::bf16: return user_op_of<DType::bf16>(op);
    // Open MPI 4.1's AVX kernels saturate 8- and 16-bit integer sums instead of wrapping
    // (tests/mpi/test_backend.cpp catches it); their max, min and prod are exact.
    case DType::i16: if (op == ReduceOp::sum) return user_op_of<DType::i16>(op); break;
    case DType::i8: if (op == ReduceOp::sum) return user_op_of<DType::i8>(op); break;
    case DType::u8: if (op == ReduceOp::sum) return user_op_of<DType::u8>(op); break;
    default: break;
  }
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
    default: return MPI_PROD;
  }
}

MpiGroup::MpiGroup(MPI_Comm comm, bool owned, std::string name, double timeout_s)
    : comm_(comm), owned_(owned), name_(std::move(name)), timeout_s_(resolve_timeout(timeout_s)) {
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
}

Waiting MpiGroup::waiting(const char* call) {
  return Waiting{comm_, call, &name_, ++calls_, timeout_s_};
}

MpiGroup::~MpiGroup() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (owned_ && !finalized && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiGroup::to_ints(std::span<const Segment> segs, int which) {
  if (static_cast<int>(segs.size()) != size_)
    throw Error(fmt::format("{} segments for a group of {}", segs.size(), size_));
  counts_[which].resize(size_);
  displs_[which].resize(size_);
  for (int i = 0; i < size_; ++i) {
    counts_[which][i] = to_int(segs[i].count, "a message");
    displs_[which][i] = to_int(segs[i].offset, "a buffer offset");
  }
}

void MpiGroup::alltoallv(const void* send, std::span<const Segment> send_segs, void* recv,
                         std::span<const Segment> recv_segs, DType t) {
  to_ints(send_segs, 0);
  to_ints(recv_segs, 1);
  MPI_Datatype dt = datatype_of(t);
  WatchGuard armed(waiting("MPI_Alltoallv"));
  check(MPI_Alltoallv(send, counts_[0].data(), displs_[0].data(), dt, recv, counts_[1].data(),
                      displs_[1].data(), dt, comm_),
        "MPI_Alltoallv");
}

void MpiGroup::allgatherv(const void* send, std::int64_t count, void* recv,
                          std::span<const Segment> recv_segs, DType t) {
  to_ints(recv_segs, 1);
  MPI_Datatype dt = datatype_of(t);
  WatchGuard armed(waiting("MPI_Allgatherv"));
  check(MPI_Allgatherv(send, to_int(count, "a message"), dt, recv, counts_[1].data(), displs_[1].data(),
                       dt, comm_),
        "MPI_Allgatherv");
}

void MpiGroup::reduce_scatter(const void* send, void* recv, std::span<const std::int64_t> counts,
                              DType t, ReduceOp op) {
  if (static_cast<int>(counts.size()) != size_)
    throw Error(fmt::format("{} counts for a group of {}", counts.size(), size_));
  counts_[0].resize(size_);
  std::int64_t total = 0;
  for (int i = 0; i < size_; ++i) {
    counts_[0][i] = to_int(counts[i], "a message");
    total += counts[i];
  }
  to_int(total, "a reduce-scatter buffer");
  WatchGuard armed(waiting("MPI_Reduce_scatter"));
  check(MPI_Reduce_scatter(send, recv, counts_[0].data(), datatype_of(t), op_of(t, op), comm_),
        "MPI_Reduce_scatter");
}

void MpiGroup::allreduce(const void* send, void* recv, std::int64_t count, DType t, ReduceOp op) {
  WatchGuard armed(waiting("MPI_Allreduce"));
  check(MPI_Allreduce(send, recv, to_int(count, "an all-reduce"), datatype_of(t), op_of(t, op), comm_),
        "MPI_Allreduce");
}

void MpiGroup::exchange(std::span<const SendMsg> sends, std::span<const RecvMsg> recvs, DType t) {
  MPI_Datatype dt = datatype_of(t);
  // Reused: exchange() runs on every call of a point-to-point step.
  std::vector<Posted>& r = posted_[0];
  std::vector<Posted>& s = posted_[1];
  r.clear();
  s.clear();
  for (const RecvMsg& m : recvs) r.push_back({m.peer, m.data, to_int(m.count, "a message"), dt});
  // MPI-3 takes a const send buffer; Posted holds one pointer type for both directions.
  for (const SendMsg& m : sends) s.push_back({m.peer, const_cast<void*>(m.data), to_int(m.count, "a message"), dt});
  post_and_wait(r, s);
}

void MpiGroup::post_and_wait(std::span<const Posted> recvs, std::span<const Posted> sends) {
  // One tag suffices: each exchange completes before the next starts, at most one message
  // flows per peer and direction, and MPI does not reorder messages between two ranks.
  constexpr int kTag = 0x5e5;
  requests_.clear();
  for (const Posted& r : recvs) {
    if (r.peer == rank_) throw Error("exchange: a receive from oneself");
    requests_.emplace_back();
    check(MPI_Irecv(r.data, r.count, r.type, r.peer, kTag, comm_, &requests_.back()), "MPI_Irecv");
  }
  for (const Posted& s : sends) {
    if (s.peer == rank_) throw Error("exchange: a send to oneself");
    requests_.emplace_back();
    check(MPI_Isend(s.data, s.count, s.type, s.peer, kTag, comm_, &requests_.back()), "MPI_Isend");
  }
  wait_exchange(recvs, sends);
}

void MpiGroup::wait_exchange(std::span<const Posted> recvs, std::span<const Posted> sends) {
  const int n = static_cast<int>(requests_.size());
  ++calls_;
  if (timeout_s_ > 0) {
    Clock::time_point last = Clock::now(), heard_at;  // of the last progress, the last receive
    int heard_from = -1;
    std::vector<int> done(n);
    for (int left = n, k = 0; left > 0; left -= k) {
      check(MPI_Testsome(n, requests_.data(), &k, done.data(), MPI_STATUSES_IGNORE), "MPI_Testsome");
      if (k == MPI_UNDEFINED) break;
      if (k == 0 && seconds_since(last) >= timeout_s_)
        exchange_timed_out(*this, requests_, recvs, sends, heard_from, heard_at);
      if (k == 0) continue;
      last = Clock::now();
      if (int peer = last_receive(done.data(), k, recvs); peer >= 0) heard_from = peer, heard_at = last;
    }
  } else {
    check(MPI_Waitall(n, requests_.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }
  heard("exchange", name_);
}

void MpiGroup::barrier() {
  WatchGuard armed(waiting("MPI_Barrier"));
  check(MPI_Barrier(comm_), "MPI_Barrier");
}

MpiCommunicator::MpiCommunicator(MPI_Comm devices, Mesh mesh, double timeout_s)
    : mesh_(std::move(mesh)), world_(devices, true, "world", timeout_s) {
  if (world_.size() != mesh_.num_devices())
    throw MismatchError(fmt::format("mesh {} has {} devices but its communicator has {} ranks", mesh_,
                                    mesh_.num_devices(), world_.size()));
}

Group& MpiCommunicator::group(const std::vector<std::string>& axes) {
  auto it = groups_.find(axes);
  if (it != groups_.end()) return *it->second;
  std::vector<int> members = group_of(mesh_, axes, device());
  // color: the device's coordinates outside the axes, as a number (the group's lowest
  // device is unique to it); key: its position in group_of() order.
  int color = members.front();
  int key = static_cast<int>(std::find(members.begin(), members.end(), device()) - members.begin());
  MPI_Comm comm = MPI_COMM_NULL;
  {
    WatchGuard armed(world_.waiting("MPI_Comm_split"));
    check(MPI_Comm_split(world_.comm(), color, key, &comm), "MPI_Comm_split");
  }
  auto g = std::make_unique<MpiGroup>(comm, true, fmt::format("{{{}}}", fmt::join(axes, ",")), world_.timeout_s());
  if (g->rank() != key || g->size() != static_cast<int>(members.size()))
    throw Error(fmt::format("group over {{{}}}: MPI ranked this device {} of {}, expected {} of {}",
                            fmt::join(axes, ","), g->rank(), g->size(), key, members.size()));
  return *groups_.emplace(axes, std::move(g)).first->second;
}

}  // namespace reshard::mpi
