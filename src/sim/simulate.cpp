// The simulator: every device of the mesh in one process. Each step packs what every device
// sends (route.hpp), delivers the packets, and unpacks them with the same host kernels the
// backends use; sender and receiver must agree on every packet. After each step each device's
// array is held against the index fill's logical value of its block under that step's type.
#include "reshard/simulate.hpp"

#include <algorithm>
#include <unordered_map>

#include "reshard/error.hpp"

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
      // Checked once per group, on its first member (coordinate 0 on every reduce axis):
      // only leads build the group, so the check is linear in the devices.
      bool lead = true;
      for (const auto& a : type.reduce_axes) lead = lead && m.coord(d, m.axis_index(a)) == 0;
      if (!lead) continue;
      std::vector<int> group = group_of(m, type.reduce_axes, d);
      logical = data[group[0]];
      for (std::size_t k = 1; k < group.size(); ++k) reduce_into(logical.data(), data[group[k]].data(), n, type.dtype, type.op);
      check = logical.data();
    }
    std::int64_t bad = check_index(check, type, m, d, tol, &source);
    if (bad) return fmt::format("device {}: {} of {} elements differ from the logical value", d, bad, n);
  }
  return {};
}

// A 64-bit mix of one transfer (sender, receiver, box): senders and receivers add theirs into
// two sums, which agree when both sides list the same multiset of transfers. This checks the
// routes without holding every device's packets at once (a reduction over g devices has g
// packets per device: g^2 per group).
std::uint64_t transfer_hash(int from, int to, const Box& box) {
  auto mix = [](std::uint64_t h, std::uint64_t v) {  // splitmix64 of the running value
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 30, h *= 0xbf58476d1ce4e5b9ull, h ^= h >> 27, h *= 0x94d049bb133111ebull, h ^= h >> 31;
    return h;
  };
  std::uint64_t h = mix(mix(0, static_cast<std::uint64_t>(from)), static_cast<std::uint64_t>(to));
  for (const Interval& iv : box.dims) h = mix(mix(h, static_cast<std::uint64_t>(iv.lo)), static_cast<std::uint64_t>(iv.hi));
  return h;
}

// The simulator holds every device's array, twice during a step. Beyond this it refuses with
// a message naming the array instead of running out of memory.
constexpr std::int64_t kMaxSimBytes = std::int64_t{4} << 30;

// Bytes the simulator holds at once for `type`: every device's local array.
std::int64_t total_bytes(const Type& type, const Mesh& m) {
  std::int64_t total = 0;
  for (int d = 0; d < m.num_devices(); ++d) total += type.local_bytes(m, d);
  return total;
}

// The plan the simulator runs: `plan` itself, or (for an f16 source with a pending sum whose
// index fill leaves f16's range: 2 + ... + g or the index beyond 65504) the same plan in f32.
// Routes and boxes depend only on element counts, so the data movement checked is the same.
Plan simulated_plan(const Plan& plan) {
  if (plan.src.dtype != DType::f16 || plan.src.op != ReduceOp::sum) return plan;
  double g = 1;
  for (const auto& a : plan.src.reduce_axes) g *= plan.mesh.axis_size(a);
  const double largest = std::max(static_cast<double>(plan.src.global_elements()), g * (g + 1) / 2);
  if (largest <= 65504) return plan;
  Plan wide = plan;
  auto widen = [](Type& t) { t.dtype = DType::f32; };
  widen(wide.src), widen(wide.dst);
  for (Step& st : wide.steps) widen(st.in), widen(st.out);
  return wide;
}

}  // namespace

SimResult simulate(const Plan& original) {
  SimResult res;
  const std::size_t elem0 = size_of(original.src.dtype);  // figures are in the plan's dtype
  const Plan plan = simulated_plan(original);
  const Mesh& m = plan.mesh;
  int P = m.num_devices();
  std::size_t elem = size_of(plan.src.dtype);
  auto scaled = [&](std::int64_t bytes) { return bytes / static_cast<std::int64_t>(elem) * static_cast<std::int64_t>(elem0); };
  for (int k = -1; k < static_cast<int>(plan.steps.size()); ++k) {
    const Type& a = plan.type_after(k);
    const Type& b = k + 1 < static_cast<int>(plan.steps.size()) ? plan.steps[k + 1].out : a;
    const std::int64_t need = total_bytes(a, m) + total_bytes(b, m);
    if (need > kMaxSimBytes)
      throw Error(fmt::format("the array {} is too large to simulate on mesh {}: every device's local array "
                              "(at step {}) takes {} bytes together, over the simulator's limit of {} bytes",
                              original.src, m, k + 1, need, kMaxSimBytes));
  }
  res.bytes_recv.assign(P, 0);
  const double tol = index_fill_tolerance(plan.src, m);
  std::vector<std::vector<std::byte>> cur(P);
  for (int d = 0; d < P; ++d) {
    cur[d].resize(plan.src.local_bytes(m, d));
    fill_index(cur[d].data(), plan.src, m, d);
    res.max_local_bytes = std::max<std::int64_t>(res.max_local_bytes, scaled(cur[d].size()));
  }
  if (std::string e = verify(m, plan.src, cur, tol, plan.src); !e.empty()) {
    res.error = "source fill: " + e;
    return res;
  }
  for (std::size_t k = 0; k < plan.steps.size(); ++k) {
    const Step& step = plan.steps[k];
    auto fail = [&](const std::string& what) {
      res.failed_step = static_cast<int>(k);
      res.error = fmt::format("step {} ({}): {}", k + 1, original.steps[k], what);
      return res;
    };
    // Each device in turn: its route, then what it receives, copied (or reduced in group
    // order) straight from each sender's in-block with the backends' kernels.
    // A device that receives exactly what an earlier one did (same boxes from the same peers
    // into the same block: every member of an all-reduce's group) gets a copy of its result,
    // so that a reduction over g devices costs O(g) reductions per group, not O(g^2).
    std::uint64_t sent = 0, received = 0;
    std::vector<std::vector<std::byte>> next(P);
    std::unordered_map<std::uint64_t, std::pair<int, std::vector<Transfer>>> done;
    for (int d = 0; d < P; ++d) {
      const DeviceRoute r = route(m, step, d);
      for (const Transfer& t : r.sends) sent += transfer_hash(d, t.peer, t.box);
      Box blk = step.out.block(m, d);
      Shape shape = extents(blk);
      std::uint64_t key = transfer_hash(-1, -1, blk);
      for (const Transfer& t : r.recvs) {
        received += transfer_hash(t.peer, d, t.box);
        key = key * 0x100000001b3ull + transfer_hash(t.peer, -1, t.box);
      }
      const bool shared = step.reduces() && r.recvs.size() > 1;
      auto same_as = [&](int e, const std::vector<Transfer>& recvs) {
        return step.out.block(m, e) == blk &&
               std::equal(recvs.begin(), recvs.end(), r.recvs.begin(), r.recvs.end(),
                          [](const Transfer& a, const Transfer& b) { return a.peer == b.peer && a.box == b.box; });
      };
      auto it = shared ? done.find(key) : done.end();
      if (it != done.end() && same_as(it->second.first, it->second.second)) {
        next[d] = next[it->second.first];
      } else {
        if (shared && it == done.end()) done.emplace(key, std::make_pair(d, r.recvs));
        next[d].assign(blk.volume() * elem, std::byte{0});
        bool first = true;
        for (const Transfer& t : r.recvs) {
          if (t.peer < 0 || t.peer >= P) return fail(fmt::format("device {} expects a box from device {}", d, t.peer));
          Box from = step.in.block(m, t.peer);
          if (!from.contains(t.box) || !blk.contains(t.box))
            return fail(fmt::format("device {} expects {} from device {}: not inside the sender's block {} and the "
                                    "receiver's block {}", d, t.box, t.peer, from, blk));
          Shape ext = extents(t.box), src_shape = extents(from), src_off = offset_in(t.box, from),
                off = offset_in(t.box, blk);
          if (step.reduces() && !first)
            reduce_box(cur[t.peer].data(), src_shape, src_off, next[d].data(), shape, off, ext, step.in.dtype, step.in.op);
          else
            copy_box(cur[t.peer].data(), src_shape, src_off, next[d].data(), shape, off, ext, elem);
          first = false;
        }
      }
      for (const Transfer& t : r.recvs)
        if (t.peer != d && step.op != Op::all_reduce) res.bytes_recv[d] += t.box.volume() * static_cast<std::int64_t>(elem0);
      if (step.op == Op::all_reduce && r.recvs.size() > 1) {
        std::int64_t g = static_cast<std::int64_t>(r.recvs.size());
        std::int64_t b = scaled(static_cast<std::int64_t>(next[d].size()));
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
      res.max_local_bytes = std::max<std::int64_t>(res.max_local_bytes, scaled(next[d].size()));
    }
    if (sent != received) return fail("the boxes devices send are not the boxes their peers expect");
    cur = std::move(next);
    if (std::string e = verify(m, step.out, cur, tol, plan.src); !e.empty()) return fail(e);
  }
  res.ok = true;
  return res;
}

}  // namespace reshard
