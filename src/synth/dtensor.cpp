// `dtensor`: a baseline that plans as PyTorch DTensor 2.15's `redistribute` does, for
// comparison (README, "Strategies"; docs/peers.md, "PyTorch DTensor 2.15", measures it against
// the real one). A type maps to DTensor's layout one mesh axis at a time: Shard(d) where the
// axis splits dim d (its position in d's axis list is its place in d's shard order), Partial
// where it is pending, Replicate otherwise; size-1 axes count like any other.
//
// DTensor's planner, followed step for step:
//  - both shard orders the default (every dim's axes in mesh order): the greedy transform
//    (generate_greedy_transform_infos): inner to outer mesh dim, replicating a dim whose
//    outer sharding differs from the target's, then outer to inner;
//  - otherwise Dijkstra over layouts (find_min_cost_path) with DTensor's transitions, in its
//    order of generation (ties go to the layout pushed first), weighed by DTensor's
//    one_step_redistribute_cost (ring figures, 87.7 GB/s and 0.6 us per hop within a host of
//    kDevicesPerHost devices, 0.22 of that bandwidth and 2.7 us across hosts, an all-to-all
//    priced as an all-gather plus 1 us);
//  - no flattened meshes exist, so no two steps are merged into one collective;
//  - never point-to-point.
// Each DTensor transform becomes one reshard step (a size-1 mesh dim's step moves 0 B, as
// DTensor's one-chunk shortcut skips its collective; reducing a size-1 Partial is a relabel,
// since reshard has no reduction over a group of one). Where a step is not exact in reshard's
// ceil layout (DTensor's nested torch.chunk blocks of uneven dims are not reshard's ceil
// blocks, and there its steps are not reshard's), the plan gathers everything and slices, and
// the figures then differ from DTensor's.
//
// The figures (dtensor_figures) are DTensor's, not the ceil layout's: local arrays are DTensor's
// nested chunks, and each collective is counted with DTensor's padding.
#include <algorithm>
#include <functional>
#include <limits>
#include <optional>
#include <queue>
#include <set>

#include "builder.hpp"
#include "reshard/error.hpp"
#include "reshard/synth.hpp"

namespace reshard {

namespace {

using namespace synth;

// DTensor's cost model assumes hosts of this many devices (an 8-GPU node); the measurement
// (benchmarks/peers/dtensor_plans.py) pins the same figure.
constexpr int kDevicesPerHost = 8;

// A mesh dim's placement: Shard(d) as d >= 0, or one of these.
constexpr int kReplicate = -1, kPartial = -2;

// DTensor's DistState: placements per mesh dim and, per tensor dim, its mesh dims in shard order.
struct Layout {
  std::vector<int> place;
  std::vector<std::vector<int>> order;
  bool operator==(const Layout&) const = default;
  auto operator<=>(const Layout&) const = default;
};

Layout layout_of(const Mesh& m, const Type& t) {
  Layout l{std::vector<int>(m.num_axes(), kReplicate), std::vector<std::vector<int>>(t.rank())};
  for (int d = 0; d < t.rank(); ++d)
    for (const std::string& a : t.dims[d].axes) {
      l.place[m.axis_index(a)] = d;
      l.order[d].push_back(m.axis_index(a));
    }
  for (const std::string& a : t.reduce_axes) l.place[m.axis_index(a)] = kPartial;
  return l;
}

// The reshard type of a layout; pending axes in mesh order, with `op`.
Type type_of(const Mesh& m, const Layout& l, const Type& like, ReduceOp op) {
  Type t = like;
  for (int d = 0; d < t.rank(); ++d) {
    t.dims[d].axes.clear();
    for (int k : l.order[d]) t.dims[d].axes.push_back(m.axes()[k].name);
  }
  t.reduce_axes.clear();
  for (int k = 0; k < m.num_axes(); ++k)
    if (l.place[k] == kPartial) t.reduce_axes.push_back(m.axes()[k].name);
  t.op = t.reduce_axes.empty() ? ReduceOp::none : op;
  return t;
}

bool default_order(const Layout& l) {
  for (const auto& o : l.order)
    if (!std::is_sorted(o.begin(), o.end()) || std::adjacent_find(o.begin(), o.end()) != o.end()) return false;
  return true;
}

// One DTensor transform: mesh dim k goes from placement `from` to `to`.
struct Transform {
  int mesh_dim, from, to;
};

// DTensor's topology figures (MeshTopoInfo.build_from_mesh) and ring costs, in microseconds.
struct Topo {
  std::vector<int> devices;
  std::vector<double> bandwidth, latency;
  explicit Topo(const Mesh& m) {
    const int n = m.num_axes();
    devices.assign(n, 1);
    bandwidth.assign(n, 87.7);
    latency.assign(n, 0.6);
    long long total = 1;
    for (int k = n - 1; k >= 0; --k) {
      devices[k] = m.axes()[k].size;
      total *= devices[k];
      if (total > kDevicesPerHost) {
        bandwidth[k] *= 0.22;
        latency[k] = 2.7;
      }
    }
  }
  // all_gather_cost and reduce_scatter_cost are the same formula; all-reduce has twice the hops.
  double ring(double gb, int k, int hop_factor) const {
    const int n = devices[k];
    const int hops = hop_factor * (n - 1);
    const double lat = 6.6 + hops * latency[k];
    const double bw = (gb * hops / n) / bandwidth[k];
    return lat + bw * 1e6;
  }
};

// one_step_redistribute_cost of a transform from layout `l` of a tensor of `bytes` bytes.
double step_cost(const Topo& topo, const Layout& l, std::int64_t bytes, const Transform& t) {
  long long shards = 1;
  for (std::size_t k = 0; k < l.place.size(); ++k)
    if (l.place[k] >= 0) shards *= topo.devices[k];
  double gb = static_cast<double>(bytes) / static_cast<double>(shards) / 1024 / 1024 / 1024;
  const int k = t.mesh_dim;
  const bool from_shard = t.from >= 0, to_shard = t.to >= 0;
  if (from_shard && t.to == kReplicate) return topo.ring(gb * topo.devices[k], k, 1);
  if (from_shard && to_shard) return topo.ring(gb, k, 1) + 1.0;
  if (t.from == kPartial && t.to == kReplicate) return topo.ring(gb, k, 2);
  if (t.from == kPartial && to_shard) return topo.ring(gb, k, 1);
  if (from_shard && t.to == kPartial) return std::numeric_limits<double>::infinity();
  return 0.0;  // Replicate -> Shard (a local chunk) and Replicate -> Partial
}

// The layout after a transform as the graph planner applies it: a Shard leaves the end of its
// dim's shard order, a new one joins at the end.
Layout apply(Layout l, const Transform& t) {
  if (t.from >= 0) l.order[t.from].pop_back();
  if (t.to >= 0) l.order[t.to].push_back(t.mesh_dim);
  l.place[t.mesh_dim] = t.to;
  return l;
}

// DTensor's get_next_state (cases 1-6) and _get_shard_to_partial_target_states, in its order.
std::vector<Transform> next_transforms(const Layout& l, const Layout& target, bool partial_ops) {
  std::vector<Transform> out;
  const int r = static_cast<int>(l.order.size()), n = static_cast<int>(l.place.size());
  for (int a = 0; a < r; ++a)  // case 1: the last mesh dim of a dim's order to another dim
    if (!l.order[a].empty())
      for (int b = 0; b < r; ++b)
        if (b != a) out.push_back({l.order[a].back(), a, b});
  for (int a = 0; a < r; ++a)  // case 2: all-gather it
    if (!l.order[a].empty()) out.push_back({l.order[a].back(), a, kReplicate});
  for (int k = 0; k < n; ++k)  // case 3: all-reduce
    if (l.place[k] == kPartial) out.push_back({k, kPartial, kReplicate});
  for (int k = 0; k < n; ++k)  // case 4: chunk
    if (l.place[k] == kReplicate)
      for (int b = 0; b < r; ++b) out.push_back({k, kReplicate, b});
  for (int k = 0; k < n; ++k)  // case 5: reduce-scatter
    if (l.place[k] == kPartial)
      for (int b = 0; b < r; ++b) out.push_back({k, kPartial, b});
  if (partial_ops)  // case 6: Replicate -> Partial, for the reduce op of the source or target
    for (int k = 0; k < n; ++k)
      if (l.place[k] == kReplicate) out.push_back({k, kReplicate, kPartial});
  for (int a = 0; a < r; ++a)  // case 7: Shard -> Partial("sum") where the target has it
    if (!l.order[a].empty() && target.place[l.order[a].back()] == kPartial)
      out.push_back({l.order[a].back(), a, kPartial});
  return out;
}

// DTensor's find_min_cost_path. nullopt past `max_states` layouts settled.
std::optional<std::vector<Transform>> graph_transforms(const Mesh& m, const Layout& src, const Layout& dst,
                                                       std::int64_t bytes, bool partial_ops, std::size_t max_states) {
  const Topo topo(m);
  struct Node {
    Layout layout;
    int parent;
    Transform t;
  };
  std::vector<Node> nodes{{src, -1, {}}};
  // (cost, push counter): heapq's order; the counter is the node's index.
  using Entry = std::pair<double, int>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> open;
  open.push({0.0, 0});
  std::set<Layout> visited;
  while (!open.empty()) {
    auto [cost, idx] = open.top();
    open.pop();
    const Layout cur = nodes[idx].layout;
    if (cur == dst) {
      std::vector<Transform> out;
      for (int i = idx; nodes[i].parent >= 0; i = nodes[i].parent) out.push_back(nodes[i].t);
      std::reverse(out.begin(), out.end());
      return out;
    }
    if (!visited.insert(cur).second) continue;
    if (visited.size() > max_states) return std::nullopt;
    for (const Transform& t : next_transforms(cur, dst, partial_ops)) {
      Layout next = apply(cur, t);
      if (visited.count(next)) continue;
      // Shard -> Partial comes only from the target-directed transitions, at no search cost.
      const double c = (t.from >= 0 && t.to == kPartial) ? 0.0 : step_cost(topo, cur, bytes, t);
      nodes.push_back({std::move(next), idx, t});
      open.push({cost + c, static_cast<int>(nodes.size()) - 1});
    }
  }
  return std::nullopt;
}

// DTensor's generate_greedy_transform_infos (both shard orders the default).
std::vector<Transform> greedy_transforms(const Mesh& m, const Layout& src, const Layout& dst) {
  std::vector<int> cur = src.place;
  const std::vector<int>& tgt = dst.place;
  const int n = m.num_axes();
  std::vector<Transform> out;
  if (n == 1) {
    if (cur[0] != tgt[0]) out.push_back({0, cur[0], tgt[0]});
    return out;
  }
  long long shards = 1;
  for (int k = 0; k < n; ++k)
    if (cur[k] >= 0) shards *= m.axes()[k].size;
  if (shards > 1) {
    for (int k = n - 1; k >= 0; --k) {
      int target = tgt[k];
      if (target >= 0) {  // nested sharding before k on that tensor dim must agree
        std::vector<int> cs, ts;
        for (int i = 0; i < k; ++i) {
          if (cur[i] == target) cs.push_back(i);
          if (tgt[i] == target) ts.push_back(i);
        }
        if (cs != ts) target = kReplicate;
      }
      if (cur[k] != target) {
        out.push_back({k, cur[k], target});
        cur[k] = target;
      }
    }
  }
  for (int k = 0; k < n; ++k)
    if (cur[k] != tgt[k]) {
      out.push_back({k, cur[k], tgt[k]});
      cur[k] = tgt[k];
    }
  return out;
}

// A greedy transform's layout: the default order (mesh order) of the new placements.
Layout apply_default(const Layout& l, const Transform& t) {
  Layout r = l;
  r.place[t.mesh_dim] = t.to;
  for (auto& o : r.order) o.clear();
  for (int k = 0; k < static_cast<int>(r.place.size()); ++k)
    if (r.place[k] >= 0) r.order[r.place[k]].push_back(k);
  return r;
}

// Reshard steps for DTensor's transforms; nullopt where one is not exact in the ceil layout
// (or is DTensor's Shard -> Partial zero-fill, which reshard has no step for).
std::optional<std::vector<Step>> to_steps(const Mesh& m, const Type& src, const Type& dst,
                                          const std::vector<Transform>& ts, bool graph) {
  const ReduceOp op = src.op != ReduceOp::none ? src.op : dst.op;
  Layout l = layout_of(m, src);
  Type cur = src;
  std::vector<Step> steps;
  for (const Transform& t : ts) {
    Layout nl = graph ? apply(l, t) : apply_default(l, t);
    Type next = type_of(m, nl, src, op);
    const std::string x = m.axes()[t.mesh_dim].name;
    Step s;
    if (t.from == kPartial && m.axes()[t.mesh_dim].size == 1)  // one chunk: DTensor issues nothing
      s = {Op::local, cur, next, {x}, t.to >= 0 ? std::vector<int>{t.to} : std::vector<int>{}};
    else if (t.from >= 0 && t.to == kReplicate) s = {Op::all_gather, cur, next, {x}, {t.from}};
    else if (t.from >= 0 && t.to >= 0) s = {Op::all_to_all, cur, next, {x}, {t.from, t.to}};
    else if (t.from == kPartial && t.to == kReplicate) s = {Op::all_reduce, cur, next, {x}, {}};
    else if (t.from == kPartial && t.to >= 0) s = {Op::reduce_scatter, cur, next, {x}, {t.to}};
    else if (t.from == kReplicate && t.to >= 0) s = {Op::slice, cur, next, {x}, {t.to}};
    else if (t.from == kReplicate && t.to == kPartial) s = {Op::local, cur, next, {x}, {}, LocalKind::make_partial};
    else return std::nullopt;
    if (!step_is_valid(m, s)) return std::nullopt;
    steps.push_back(std::move(s));
    cur = next;
    l = std::move(nl);
  }
  return steps;
}

}  // namespace

// Pre: src and dst compatible on mesh, size-1 axes kept (they count as mesh dims).
std::vector<Step> dtensor_steps(const Mesh& mesh, const Type& src, const Type& dst, const SynthOptions&,
                                std::size_t max_graph_states) {
  const Layout from = layout_of(mesh, src), to = layout_of(mesh, dst);
  std::optional<std::vector<Step>> steps;
  const bool graph = !default_order(from) || !default_order(to);
  std::optional<std::vector<Transform>> ts;
  if (graph) {
    const bool partial_ops = src.op != ReduceOp::none || dst.op != ReduceOp::none;
    ts = graph_transforms(mesh, from, to, src.global_elements() * static_cast<std::int64_t>(size_of(src.dtype)),
                          partial_ops, max_graph_states);
  } else {
    ts = greedy_transforms(mesh, from, to);
  }
  if (ts) steps = to_steps(mesh, src, dst, *ts, graph);
  if (!steps) {
    // Not DTensor's plan: its steps are not exact in the ceil layout (or the graph was cut
    // short). Gather everything and slice, still collective-only; a size-1 Partial is dropped
    // by a relabel first (reshard reduces over no group of one).
    Builder b{mesh, src, {}};
    Type next = src;
    std::erase_if(next.reduce_axes, [&](const std::string& a) { return mesh.axis_size(a) == 1 && !dst.is_partial_over(a); });
    if (next.reduce_axes.empty()) next.op = ReduceOp::none;
    if (!(next == src)) b.add(Op::local, next, {}, {});
    std::vector<Step> g = naive_steps(mesh, b.cur, dst);
    steps = b.steps;
    steps->insert(steps->end(), g.begin(), g.end());
  }
  const Type& last = steps->empty() ? src : steps->back().out;
  if (!same_dims(last, dst) || std::set(last.reduce_axes.begin(), last.reduce_axes.end()) !=
                                   std::set(dst.reduce_axes.begin(), dst.reduce_axes.end()))
    throw Error(fmt::format("dtensor: no collective plan of {} -> {} on mesh {}", src, dst, mesh));
  if (!steps->empty()) steps->back().out = dst;  // the target's order of pending axes
  return *steps;
}

namespace {

// DTensor's local size of a dim of global size n chunked by torch.chunk along `axes` in order
// (Shard.local_shard_size_and_offset), skipping axis `skip` (-1: none) — its logical shape.
std::int64_t nested_size(const Mesh& m, std::int64_t n, const std::vector<std::string>& axes, int device,
                         const std::string* skip = nullptr) {
  for (const std::string& a : axes) {
    if (skip && a == *skip) continue;
    const int k = m.axis_index(a);
    const std::int64_t chunks = m.axes()[k].size, c = m.coord(device, k);
    if (n % chunks == 0) {
      n /= chunks;
      continue;
    }
    const std::int64_t full = (n + chunks - 1) / chunks, start = full * c;
    n = std::max<std::int64_t>(0, std::min(n, start + full) - start);
  }
  return n;
}

std::vector<std::int64_t> nested_shape(const Mesh& m, const Type& t, int device, const std::string* skip = nullptr) {
  std::vector<std::int64_t> s;
  for (const Dim& d : t.dims) s.push_back(nested_size(m, d.size, d.axes, device, skip));
  return s;
}

std::int64_t product(const std::vector<std::int64_t>& v) {
  std::int64_t p = 1;
  for (std::int64_t x : v) p *= x;
  return p;
}

// Bytes one device receives in a DTensor step, with DTensor's padding: an all-gather pads each
// input to the full chunk of the logical dim, an all-to-all pads the old dim so and the new one
// to a multiple of the group, a reduce-scatter pads its input to a multiple of the group.
std::int64_t padded_recv(const Mesh& m, const Step& st, int device) {
  if (!st.communicates() || st.axes.size() != 1) return 0;
  const std::string& x = st.axes[0];
  const std::int64_t g = m.axis_size(x), item = static_cast<std::int64_t>(size_of(st.in.dtype));
  if (g <= 1) return 0;  // one chunk: DTensor issues nothing
  std::vector<std::int64_t> local = nested_shape(m, st.in, device);
  auto full_chunk = [&](std::int64_t n) { return (n + g - 1) / g; };
  switch (st.op) {
    case Op::all_gather: {
      const int a = st.dims.at(0);
      const std::int64_t logical = nested_size(m, st.in.dims[a].size, st.in.dims[a].axes, device, &x);
      if (logical % g) local[a] = full_chunk(logical);
      return (g - 1) * product(local) * item;
    }
    case Op::all_to_all: {
      const int a = st.dims.at(0), b = st.dims.at(1);
      const std::int64_t la = nested_size(m, st.in.dims[a].size, st.in.dims[a].axes, device, &x);
      if (la % g) local[a] = full_chunk(la);
      if (local[b] % g) local[b] = full_chunk(local[b]) * g;
      return (g - 1) * (product(local) / g) * item;
    }
    case Op::reduce_scatter: {
      const int d = st.dims.at(0);
      if (local[d] % g) local[d] = full_chunk(local[d]) * g;
      return (g - 1) * (product(local) / g) * item;
    }
    case Op::all_reduce: {
      const std::int64_t b = product(local) * item;
      return b / g * 2 * (g - 1) + b % g * 2 * (g - 1) / g;
    }
    default: return 0;
  }
}

}  // namespace

DtensorFigures dtensor_figures(const Mesh& mesh, const Type& src, const std::vector<Step>& steps) {
  DtensorFigures f;
  f.step_bytes_recv_max.assign(steps.size(), 0);
  const std::int64_t item = static_cast<std::int64_t>(size_of(src.dtype));
  for (int dev = 0; dev < mesh.num_devices(); ++dev) {
    std::int64_t total = 0;
    f.max_local_bytes = std::max(f.max_local_bytes, product(nested_shape(mesh, src, dev)) * item);
    for (std::size_t k = 0; k < steps.size(); ++k) {
      const std::int64_t b = padded_recv(mesh, steps[k], dev);
      f.step_bytes_recv_max[k] = std::max(f.step_bytes_recv_max[k], b);
      total += b;
      f.max_local_bytes = std::max(f.max_local_bytes, product(nested_shape(mesh, steps[k].out, dev)) * item);
    }
    f.bytes_recv_max = std::max(f.bytes_recv_max, total);
  }
  return f;
}

}  // namespace reshard
