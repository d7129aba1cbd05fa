// The `raw` strategy of `reshard bench` (bench_raw.hpp).
#include "raw.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "../backends/mpi/mpi_comm.hpp"  // the executor's datatypes and reduction ops
#include "mpi_session.hpp"
#include "reshard/host_kernels.hpp"
#include "reshard/route.hpp"

namespace reshard::bench {

namespace {

// Whether every device of a permute sends its whole block to at most one other device and
// receives its whole block from at most one (then one MPI_Sendrecv per device does it).
bool whole_block_pairs(const Mesh& mesh, const Step& step) {
  for (int d = 0; d < mesh.num_devices(); ++d) {
    DeviceRoute r = route(mesh, step, d);
    const Box in = step.in.block(mesh, d), out = step.out.block(mesh, d);
    int sends = 0, recvs = 0;
    for (const Transfer& t : r.sends) sends += t.peer != d && !t.box.empty();
    for (const Transfer& t : r.recvs) recvs += t.peer != d && !t.box.empty();
    if (sends > 1 || recvs > 1) return false;
    for (const Transfer& t : r.sends)
      if (!t.box.empty() && t.box != in) return false;
    for (const Transfer& t : r.recvs)
      if (!t.box.empty() && t.box != out) return false;
  }
  return true;
}

int to_int(std::int64_t n, const char* what) {
  if (n > INT_MAX) throw Error(fmt::format("{} of {} elements is too large for one MPI call", what, n));
  return static_cast<int>(n);
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return b ? (a + b - 1) / b : 0; }

// The index fill of `device`'s source shard, zero-padded to `elems` elements.
Bytes source_of(const Plan& plan, int device, std::int64_t elems) {
  const std::size_t elem = size_of(plan.src.dtype);
  Bytes b(static_cast<std::size_t>(std::max(elems, plan.src.local_elements(plan.mesh, device))) * elem);
  fill_index(b.data(), plan.src, plan.mesh, device);
  b.resize(static_cast<std::size_t>(elems) * elem);
  return b;
}

// Elements of `got` that differ from `want`: bytewise, or within the element type's rounding
// where the values went through a reduction (MPI may reduce in another order).
std::int64_t differences(const Bytes& got, const Bytes& want, DType t, bool reduced) {
  const std::size_t elem = size_of(t);
  const std::int64_t n = static_cast<std::int64_t>(std::min(got.size(), want.size()) / elem);
  std::int64_t bad = static_cast<std::int64_t>(got.size() != want.size());
  // Two roundings of the element type apart at most (f16/bf16 keep 11/8 significant bits).
  const double tol = t == DType::f16 || t == DType::bf16 ? 1.0 / 64 : t == DType::f32 ? 1e-5 : 1e-12;
  for (std::int64_t k = 0; k < n; ++k) {
    if (std::memcmp(got.data() + k * elem, want.data() + k * elem, elem) == 0) continue;
    const double a = load_as(got.data(), k, t), b = load_as(want.data(), k, t);
    if (!(reduced && is_float(t) && std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b)))) ++bad;
  }
  return bad;
}

// The step's group as an MPI communicator: a split of the mesh's ranks with the executor's
// grouping (color: the group's first device; key: the position in group_of() order).
class GroupComm {
 public:
  GroupComm(MPI_Comm devices, const std::vector<int>& members, int me) {
    const auto pos = std::find(members.begin(), members.end(), me) - members.begin();
    mpi::check(MPI_Comm_split(devices, members.front(), static_cast<int>(pos), &comm_), "MPI_Comm_split");
  }
  ~GroupComm() { MPI_Comm_free(&comm_); }
  GroupComm(const GroupComm&) = delete;
  GroupComm& operator=(const GroupComm&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

// Buffers, communicator and expected result of one raw call on this device.
struct RawState {
  Bytes send, recv, expected;
  std::int64_t recv_from_others = 0;  // bytes
  bool reduced = false;               // the expected values went through a reduction
  std::optional<GroupComm> group;
};

}  // namespace

std::optional<RawCall> raw_call_for(const Plan& plan, std::string& why) {
  if (plan.steps.empty()) {
    why = "raw: n/a, no step (the source already is the target)";
    return std::nullopt;
  }
  if (plan.steps.size() != 1 || !plan.steps[0].communicates()) {
    std::vector<std::string_view> ops;
    for (const Step& st : plan.steps) ops.push_back(name_of(st.op));
    why = fmt::format("raw: n/a, the reshard plan is not one collective ({})", fmt::join(ops, ", "));
    return std::nullopt;
  }
  const Step& s = plan.steps[0];
  switch (s.op) {
    case Op::all_gather: return RawCall{s, "MPI_Allgather"};
    case Op::all_to_all: return RawCall{s, "MPI_Alltoall"};
    case Op::reduce_scatter: return RawCall{s, "MPI_Reduce_scatter_block"};
    case Op::all_reduce: return RawCall{s, "MPI_Allreduce"};
    case Op::permute:
      if (whole_block_pairs(plan.mesh, s)) return RawCall{s, "MPI_Sendrecv"};
      why = "raw: n/a, the permute moves parts of blocks (no single MPI_Sendrecv per device)";
      return std::nullopt;
    default:
      why = fmt::format("raw: n/a, the reshard plan is one {} step (point-to-point, no MPI collective)", s.op);
      return std::nullopt;
  }
}

Contender raw_contender(Context& ctx, const Plan& plan, const RawCall& call, const Timing& timing) {
  const Mesh& mesh = plan.mesh;
  const Step& step = call.step;
  const int me = ctx.device();
  const DType dt = plan.src.dtype;
  const auto elem = static_cast<std::int64_t>(size_of(dt));
  const MPI_Datatype mdt = mpi::datatype_of(dt);
  const std::int64_t src_max = plan.src.max_local_bytes(mesh) / elem;

  auto r = std::make_shared<RawState>();
  const bool pairwise = step.op == Op::permute;
  const std::vector<int> members = pairwise ? std::vector<int>{} : group_of(mesh, step.axes, me);
  if (!pairwise) r->group.emplace(ctx.comm(), members, me);
  const MPI_Comm comm = pairwise ? ctx.comm() : r->group->get();
  const auto n = static_cast<std::int64_t>(members.size());
  const auto pos = std::find(members.begin(), members.end(), me) - members.begin();
  // The expected result over the members' padded sources: the chunk [at, at + len) of each,
  // concatenated in group order (gathers) or reduced in group order (reductions).
  auto expect = [&](std::int64_t padded, std::int64_t at, std::int64_t len, bool reduce) {
    r->reduced = reduce;
    for (int m : members) {
      Bytes src = source_of(plan, m, padded);
      Bytes part(src.begin() + at * elem, src.begin() + (at + len) * elem);
      if (!reduce || m == members.front()) r->expected.insert(r->expected.end(), part.begin(), part.end());
      else reduce_into(r->expected.data(), part.data(), len, dt, plan.src.op);
    }
  };

  Contender c;
  switch (step.op) {
    case Op::all_gather: {
      const int count = to_int(src_max, "MPI_Allgather");
      r->send = source_of(plan, me, count);
      r->recv.resize(r->send.size() * members.size());
      r->recv_from_others = (n - 1) * count * elem;
      c.once = [r, count, mdt, comm] {
        auto armed = watched(comm, "MPI_Allgather");
        mpi::check(MPI_Allgather(r->send.data(), count, mdt, r->recv.data(), count, mdt, comm), "MPI_Allgather");
      };
      expect(count, 0, count, false);
      break;
    }
    case Op::all_to_all: {
      const int chunk = to_int(ceil_div(src_max, n), "MPI_Alltoall");
      r->send = source_of(plan, me, chunk * n);
      r->recv.resize(r->send.size());
      r->recv_from_others = (n - 1) * chunk * elem;
      c.once = [r, chunk, mdt, comm] {
        auto armed = watched(comm, "MPI_Alltoall");
        mpi::check(MPI_Alltoall(r->send.data(), chunk, mdt, r->recv.data(), chunk, mdt, comm), "MPI_Alltoall");
      };
      expect(chunk * n, pos * chunk, chunk, false);
      break;
    }
    case Op::reduce_scatter: {
      const int block = to_int(ceil_div(src_max, n), "MPI_Reduce_scatter_block");
      const MPI_Op op = mpi::op_of(dt, plan.src.op);
      r->send = source_of(plan, me, block * n);
      r->recv.resize(static_cast<std::size_t>(block * elem));
      r->recv_from_others = (n - 1) * block * elem;  // as ring algorithms move it
      c.once = [r, block, mdt, op, comm] {
        auto armed = watched(comm, "MPI_Reduce_scatter_block");
        mpi::check(MPI_Reduce_scatter_block(r->send.data(), r->recv.data(), block, mdt, op, comm),
                   "MPI_Reduce_scatter_block");
      };
      expect(block * n, pos * block, block, true);
      break;
    }
    case Op::all_reduce: {
      const int count = to_int(src_max, "MPI_Allreduce");
      const MPI_Op op = mpi::op_of(dt, plan.src.op);
      r->send = source_of(plan, me, count);
      r->recv.resize(r->send.size());
      r->recv_from_others = 2 * (n - 1) * ceil_div(count, n) * elem;  // as ring algorithms move it
      c.once = [r, count, mdt, op, comm] {
        auto armed = watched(comm, "MPI_Allreduce");
        mpi::check(MPI_Allreduce(r->send.data(), r->recv.data(), count, mdt, op, comm), "MPI_Allreduce");
      };
      expect(count, 0, count, true);
      break;
    }
    case Op::permute: {
      int to = MPI_PROC_NULL, from = MPI_PROC_NULL;
      bool keep = false;
      const DeviceRoute rt = route(mesh, step, me);
      for (const Transfer& t : rt.sends) {
        if (t.box.empty()) continue;
        if (t.peer == me) keep = true;
        else to = t.peer;
      }
      for (const Transfer& t : rt.recvs)
        if (!t.box.empty() && t.peer != me) from = t.peer;
      r->send = source_of(plan, me, plan.src.local_elements(mesh, me));
      r->recv.resize(static_cast<std::size_t>(plan.dst.local_bytes(mesh, me)));
      const int scount = to_int(to == MPI_PROC_NULL ? 0 : plan.src.local_elements(mesh, me), "MPI_Sendrecv");
      const int rcount = to_int(from == MPI_PROC_NULL ? 0 : plan.dst.local_elements(mesh, me), "MPI_Sendrecv");
      r->recv_from_others = rcount * elem;
      c.once = [r, to, from, scount, rcount, keep, mdt, comm] {
        if (keep) std::memcpy(r->recv.data(), r->send.data(), std::min(r->send.size(), r->recv.size()));
        if (to != MPI_PROC_NULL || from != MPI_PROC_NULL) {
          auto armed = watched(comm, "MPI_Sendrecv");
          mpi::check(MPI_Sendrecv(r->send.data(), scount, mdt, to, 0, r->recv.data(), rcount, mdt, from, 0, comm,
                                  MPI_STATUS_IGNORE),
                     "MPI_Sendrecv");
        }
      };
      // The whole block arrives from `from`, or stays (an empty block: nothing at all).
      r->expected = source_of(plan, from != MPI_PROC_NULL ? from : me, plan.dst.local_elements(mesh, me));
      break;
    }
    default: throw Error(fmt::format("raw: no MPI call for a {} step", step.op));
  }

  c.refresh = [r] {
    r->send = Bytes(r->send);
    r->recv = Bytes(r->recv);
  };
  c.row.strategy = "raw";
  c.row.steps = c.row.calls = {call.mpi_call};
  c.row.check = "transport";
  c.row.notes.push_back(fmt::format(
      "raw: one {} per device over {}, verified as transport (each rank received what the call's semantics give)",
      call.mpi_call, pairwise ? "the permute's partners" : fmt::format("the group of {{{}}}", fmt::join(step.axes, ","))));
  warm_up(ctx.comm(), timing, c);
  c.finish = [r, &ctx, &plan, once = c.once](Row& row) {
    const MPI_Comm devices = ctx.comm();
    std::fill(r->recv.begin(), r->recv.end(), std::byte{0xff});  // the checked result is a fresh one
    once();
    row.mismatches = reduce_all(devices, differences(r->recv, r->expected, plan.src.dtype, r->reduced), MPI_SUM);
    row.verified = row.mismatches == 0;
    row.bytes_recv_max = reduce_all(devices, r->recv_from_others, MPI_MAX);
    row.peak_bytes = reduce_all(devices, static_cast<std::int64_t>(r->send.size() + r->recv.size()), MPI_MAX);
    // Whether the raw output already is the target shard (where no packing is needed).
    const std::int64_t same_size = ctx.local_bytes(plan.dst) == static_cast<std::int64_t>(r->recv.size());
    row.output_is_target = reduce_all(devices, same_size, MPI_MIN) &&
                           ctx.count_index_mismatches(plan.dst, r->recv.data(), r->recv.size()) == 0;
    row.notes.push_back(fmt::format("raw: its output {} the target shard", *row.output_is_target ? "is" : "is not"));
  };
  return c;
}

}  // namespace reshard::bench
