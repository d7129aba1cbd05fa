// The simulator: every device of the mesh in one process. Each step packs what every device
// sends (route.hpp), delivers the packets, and unpacks them with the same host kernels the
// backends use; sender and receiver must agree on every packet. After each step each device's
// array is held against the index fill's logical value of its block under that step's type.
#include "reshard/simulate.hpp"

#include <map>

#include "reshard/host_kernels.hpp"
#include "reshard/route.hpp"

namespace reshard {

namespace {

using Shape = std::vector<std::int64_t>;


// Checks every device's array against `type` (the data came from an index-filled `source`).
// Partial types are reduced over their group first (in group order, as the backends do).
std::string verify(const Mesh& m, const Type& type, const std::vector<std::vector<std::byte>>& data, double tol,
                   const Type& source) {
  std::size_t elem = size_of(type.dtype);
  for (int d = 0; d < m.num_devices(); ++d) {
    std::int64_t n = type.local_elements(m, d);
    if (static_cast<std::int64_t>(data[d].size()) != n * static_cast<std::int64_t>(elem))
      return fmt::format("device {} holds {} bytes, its block of {} has {}", d, data[d].size(), type, n * elem);
    std::vector<std::byte> logical;
    const void* check = data[d].data();
    if (type.op != ReduceOp::none) {
      std::vector<int> group = group_of(m, type.reduce_axes, d);
      if (group.front() != d) continue;  // checked once per group
      logical = data[group[0]];
      for (std::size_t k = 1; k < group.size(); ++k) reduce_into(logical.data(), data[group[k]].data(), n, type.dtype, type.op);
      check = logical.data();
    }
    std::int64_t bad = check_index(check, type, m, d, tol, &source);
    if (bad) return fmt::format("device {}: {} of {} elements differ from the logical value", d, bad, n);
  }
  return {};
}

}  // namespace

SimResult simulate(const Plan& plan) {
  SimResult res;
  const Mesh& m = plan.mesh;
  int P = m.num_devices();
  std::size_t elem = size_of(plan.src.dtype);
  res.bytes_recv.assign(P, 0);
  const double tol = index_fill_tolerance(plan.src, m);
  std::vector<std::vector<std::byte>> cur(P);
  for (int d = 0; d < P; ++d) {
    cur[d].resize(plan.src.local_bytes(m, d));
    fill_index(cur[d].data(), plan.src, m, d);
    res.max_local_bytes = std::max<std::int64_t>(res.max_local_bytes, cur[d].size());
  }
  if (std::string e = verify(m, plan.src, cur, tol, plan.src); !e.empty()) {
    res.error = "source fill: " + e;
    return res;
  }
  for (std::size_t k = 0; k < plan.steps.size(); ++k) {
    const Step& step = plan.steps[k];
    auto fail = [&](const std::string& what) {
      res.failed_step = static_cast<int>(k);
      res.error = fmt::format("step {} ({}): {}", k + 1, step, what);
      return res;
    };
    std::vector<DeviceRoute> routes(P);
    for (int d = 0; d < P; ++d) routes[d] = route(m, step, d);
    // Pack: one packet per (sender, receiver), boxes in the sender's order.
    std::map<std::pair<int, int>, std::vector<std::byte>> packets;
    for (int s = 0; s < P; ++s) {
      Box blk = step.in.block(m, s);
      Shape shape = extents(blk);
      for (const Transfer& t : routes[s].sends) {
        auto& pkt = packets[{s, t.peer}];
        if (!pkt.empty()) return fail(fmt::format("device {} sends device {} two boxes", s, t.peer));
        Shape ext = extents(t.box), zero(ext.size(), 0), off = offset_in(t.box, blk);
        pkt.resize(t.box.volume() * elem);
        copy_box(cur[s].data(), shape, off, pkt.data(), ext, zero, ext, elem);
      }
    }
    // Deliver and unpack.
    std::vector<std::vector<std::byte>> next(P);
    for (int d = 0; d < P; ++d) {
      Box blk = step.out.block(m, d);
      Shape shape = extents(blk);
      next[d].assign(blk.volume() * elem, std::byte{0});
      bool first = true;
      for (const Transfer& t : routes[d].recvs) {
        auto it = packets.find({t.peer, d});
        if (it == packets.end()) return fail(fmt::format("device {} expects a box from {} that is never sent", d, t.peer));
        if (static_cast<std::int64_t>(it->second.size()) != t.box.volume() * static_cast<std::int64_t>(elem))
          return fail(fmt::format("device {} expects {} from {}, which sends {} bytes", d, t.box, t.peer, it->second.size()));
        Shape ext = extents(t.box), zero(ext.size(), 0), off = offset_in(t.box, blk);
        if (step.reduces() && !first)
          reduce_box(it->second.data(), ext, zero, next[d].data(), shape, off, ext, step.in.dtype, step.in.op);
        else
          copy_box(it->second.data(), ext, zero, next[d].data(), shape, off, ext, elem);
        first = false;
        if (t.peer != d && step.op != Op::all_reduce) res.bytes_recv[d] += static_cast<std::int64_t>(it->second.size());
        packets.erase(it);
      }
      if (step.op == Op::all_reduce && routes[d].recvs.size() > 1) {
        std::int64_t g = static_cast<std::int64_t>(routes[d].recvs.size());
        std::int64_t b = static_cast<std::int64_t>(next[d].size());
        res.bytes_recv[d] += b / g * 2 * (g - 1) + b % g * 2 * (g - 1) / g;  // 2(g-1)/g b, no overflow
      }
      if (step.op == Op::local && step.local_kind == LocalKind::make_partial) {
        // Device 0 of each new pending group keeps the value; the others hold the identity
        // (max and min are idempotent: every device may keep it).
        bool lead = true;
        for (const auto& a : step.axes) lead = lead && m.coord(d, m.axis_index(a)) == 0;
        if (!lead && (step.out.op == ReduceOp::sum || step.out.op == ReduceOp::prod))
          fill_identity(next[d].data(), blk.volume(), step.out.dtype, step.out.op);
      }
      res.max_local_bytes = std::max<std::int64_t>(res.max_local_bytes, next[d].size());
    }
    if (!packets.empty()) {
      auto [from, to] = packets.begin()->first;
      return fail(fmt::format("device {} sends device {} a box it does not expect", from, to));
    }
    cur = std::move(next);
    if (std::string e = verify(m, step.out, cur, tol, plan.src); !e.empty()) return fail(e);
  }
  res.ok = true;
  return res;
}

}  // namespace reshard
