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
// blocks, and there its steps are not reshard's), the plan is made by the rules this baseline
// followed before it was measured (namespace rules), and is not DTensor's.
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

std::vector<Step> greedy_per_axis_steps(const Mesh& mesh, const Type& src, const Type& dst);

namespace {

using namespace synth;

// The same layout: dims alike, the same pending axes in any order.
bool same_layout(const Type& a, const Type& b) {
  return same_dims(a, b) && std::set(a.reduce_axes.begin(), a.reduce_axes.end()) ==
                                std::set(b.reduce_axes.begin(), b.reduce_axes.end());
}

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
// `weigh` gives a transform's cost from a layout (DTensor's one_step_redistribute_cost), nullopt
// where it is no edge.
using Weigh = std::function<std::optional<double>(const Layout&, const Transform&)>;
std::optional<std::vector<Transform>> graph_transforms(const Layout& src, const Layout& dst, bool partial_ops,
                                                       std::size_t max_states, const Weigh& weigh) {
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
      const std::optional<double> c = weigh(cur, t);
      if (!c) continue;
      nodes.push_back({std::move(next), idx, t});
      open.push({cost + *c, static_cast<int>(nodes.size()) - 1});
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

// The reshard step of one DTensor transform from `cur` (layout `l`); nullopt for DTensor's
// Shard -> Partial zero-fill, which reshard has no step for. Not checked for exactness.
std::optional<Step> step_of(const Mesh& m, const Type& cur, const Layout& l, const Transform& t, bool graph,
                            ReduceOp op) {
  const Layout nl = graph ? apply(l, t) : apply_default(l, t);
  Type next = type_of(m, nl, cur, op);
  const std::string x = m.axes()[t.mesh_dim].name;
  if (t.from == kPartial && m.axes()[t.mesh_dim].size == 1)  // one chunk: DTensor issues nothing
    return Step{Op::local, cur, next, {x}, t.to >= 0 ? std::vector<int>{t.to} : std::vector<int>{}};
  if (t.from >= 0 && t.to == kReplicate) return Step{Op::all_gather, cur, next, {x}, {t.from}};
  if (t.from >= 0 && t.to >= 0) return Step{Op::all_to_all, cur, next, {x}, {t.from, t.to}};
  if (t.from == kPartial && t.to == kReplicate) return Step{Op::all_reduce, cur, next, {x}, {}};
  if (t.from == kPartial && t.to >= 0) return Step{Op::reduce_scatter, cur, next, {x}, {t.to}};
  if (t.from == kReplicate && t.to >= 0) return Step{Op::slice, cur, next, {x}, {t.to}};
  if (t.from == kReplicate && t.to == kPartial)
    return Step{Op::local, cur, next, {x}, {}, LocalKind::make_partial};
  return std::nullopt;
}

ReduceOp op_of(const Type& src, const Type& dst) { return src.op != ReduceOp::none ? src.op : dst.op; }

// Reshard steps for DTensor's transforms; nullopt where one is not exact in the ceil layout.
std::optional<std::vector<Step>> to_steps(const Mesh& m, const Type& src, const std::vector<Transform>& ts,
                                          bool graph, ReduceOp op) {
  Layout l = layout_of(m, src);
  Type cur = src;
  std::vector<Step> steps;
  for (const Transform& t : ts) {
    std::optional<Step> s = step_of(m, cur, l, t, graph, op);
    if (!s || !step_is_valid(m, *s)) return std::nullopt;
    cur = s->out;
    l = graph ? apply(l, t) : apply_default(l, t);
    steps.push_back(std::move(*s));
  }
  return steps;
}

}  // namespace

// The fallback where DTensor's own plan cannot run on the ceil layout: the rules this baseline
// followed before it was measured against DTensor (its graph planner over the steps that are
// exact, weighed by reshard's cost model; several Partial mesh dims reduce-scattered outer first;
// per-axis greedy for mesh-ordered shardings), with figures that count every block padded to the
// largest. Not DTensor's plan; the plan says so.
namespace rules {

using namespace synth;
using namespace synth;

bool mesh_ordered(const Mesh& m, const Type& t) {
  for (const Dim& d : t.dims)
    for (std::size_t k = 1; k < d.axes.size(); ++k)
      if (m.axis_index(d.axes[k - 1]) >= m.axis_index(d.axes[k])) return false;
  return true;
}

bool has_exchange(const std::vector<Step>& steps) {
  return std::any_of(steps.begin(), steps.end(), [](const Step& s) { return s.op == Op::exchange || s.op == Op::permute; });
}

// Same layout: dims alike, the same pending axes in any order.
bool same_layout(const Type& a, const Type& b) {
  if (!same_dims(a, b) || a.op != b.op) return false;
  std::set<std::string> x(a.reduce_axes.begin(), a.reduce_axes.end()), y(b.reduce_axes.begin(), b.reduce_axes.end());
  return x == y;
}

std::string layout_key(Type t) {
  std::sort(t.reduce_axes.begin(), t.reduce_axes.end());
  return t.to_string();
}

// DTensor's graph planner over layouts. nullopt when the target is not reached within
// `max_states` layouts (then the plan gathers and slices) or by exact steps.
std::optional<std::vector<Step>> graph_plan(const Mesh& m, const Type& s, const Type& t, const SynthOptions& opts,
                                            std::size_t max_states) {
  struct Node {
    Type type;
    int parent;
    Step step;
  };
  std::vector<Node> nodes{{s, -1, {}}};
  std::map<std::string, double> dist{{layout_key(s), 0.0}};
  using Entry = std::pair<double, int>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> open;
  open.push({0.0, 0});
  std::set<std::string> done;
  while (!open.empty()) {
    // Plain copies, not a structured binding: the lambda below captures them, which clang
    // before 16 refuses for bindings.
    const double g = open.top().first;
    const int idx = open.top().second;
    open.pop();
    const Type cur = nodes[idx].type;
    if (!done.insert(layout_key(cur)).second) continue;
    if (same_layout(cur, t)) {
      std::vector<Step> steps;
      for (int i = idx; nodes[i].parent >= 0; i = nodes[i].parent) steps.push_back(nodes[i].step);
      std::reverse(steps.begin(), steps.end());
      if (!steps.empty()) steps.back().out = t;  // the target's order of pending axes
      return steps;
    }
    if (done.size() > max_states) return std::nullopt;
    auto edge = [&](Op op, Type next, std::vector<std::string> axes, std::vector<int> dims,
                    LocalKind kind = LocalKind::relabel) {
      if (next.reduce_axes.empty()) next.op = ReduceOp::none;
      Step st{op, cur, std::move(next), std::move(axes), std::move(dims), kind};
      const std::string k = layout_key(st.out);
      if (done.count(k) || !step_is_valid(m, st)) return;
      const double c = g + estimate_step_s(m, st, opts);
      auto it = dist.find(k);
      if (it != dist.end() && it->second <= c) return;
      dist[k] = c;
      nodes.push_back({st.out, idx, st});
      open.push({c, static_cast<int>(nodes.size()) - 1});
    };
    const int r = cur.rank();
    for (int a = 0; a < r; ++a) {  // cases 1 and 2: the last axis of a dim's shard order
      if (cur.dims[a].axes.empty()) continue;
      const std::string x = cur.dims[a].axes.back();
      Type popped = cur;
      popped.dims[a].axes.pop_back();
      for (int b = 0; b < r; ++b) {
        if (b == a) continue;
        Type next = popped;
        next.dims[b].axes.push_back(x);
        edge(Op::all_to_all, next, {x}, {a, b});
      }
      edge(Op::all_gather, popped, {x}, {a});
    }
    for (const std::string& x : cur.reduce_axes) {  // cases 3 and 5
      Type reduced = cur;
      erase(reduced.reduce_axes, x);
      edge(Op::all_reduce, reduced, {x}, {});
      for (int b = 0; b < r; ++b) {
        Type next = reduced;
        next.dims[b].axes.push_back(x);
        edge(Op::reduce_scatter, next, {x}, {b});
      }
    }
    for (const Axis& ax : m.axes()) {  // cases 4 and 6, from Replicate
      if (cur.uses(ax.name)) continue;
      for (int b = 0; b < r; ++b) {
        Type next = cur;
        next.dims[b].axes.push_back(ax.name);
        edge(Op::slice, next, {ax.name}, {b});
      }
      if (t.is_partial_over(ax.name) && (cur.op == ReduceOp::none || cur.op == t.op)) {
        Type next = cur;
        next.op = t.op;
        next.reduce_axes.push_back(ax.name);
        edge(Op::local, next, {ax.name}, {}, LocalKind::make_partial);
      }
    }
  }
  return std::nullopt;
}

// Several Partial mesh dims to reduce: reduce-scatter each, outer mesh dim first, no
// all-reduce. Returns the steps taken (empty when the rule does not apply).
std::vector<Step> reduce_partials(const Mesh& m, const Type& s, const Type& t) {
  std::vector<std::string> todo;
  for (const Axis& ax : m.axes())  // mesh order: outer first
    if (s.is_partial_over(ax.name) && !t.is_partial_over(ax.name)) todo.push_back(ax.name);
  if (todo.size() < 2) return {};
  Builder b{m, s, {}};
  for (const std::string& x : todo) {
    auto scatter_onto = [&](int d) {
      Type next = b.cur;
      erase(next.reduce_axes, x);
      if (next.reduce_axes.empty()) next.op = ReduceOp::none;
      next.dims[d].axes.push_back(x);
      return b.add(Op::reduce_scatter, next, {x}, {d});
    };
    const int want = t.dim_of(x);
    // Onto the target's dim where x goes at its minor end in mesh order there.
    bool done = want >= 0 && mesh_ordered(m, [&] {
                  Type probe = b.cur;
                  probe.dims[want].axes.push_back(x);
                  return probe;
                }()) && scatter_onto(want);
    for (int d = 0; !done && d < b.cur.rank(); ++d) done = scatter_onto(d);
    if (!done) return {};  // no exact reduce-scatter: the rule cannot be followed here
  }
  return b.steps;
}

bool arrives(const std::vector<Step>& steps, const Type& s, const Type& t) {
  return same_layout(steps.empty() ? s : steps.back().out, t);
}


std::vector<Step> plan(const Mesh& mesh, const Type& src, const Type& dst, const SynthOptions& opts,
                       std::size_t max_graph_states) {
  // A Partial size-1 mesh dim is DTensor's one shortcut (one chunk: no collective): dropped by
  // a relabel first (and added back at the end by make_partial, which moves nothing).
  Builder pre{mesh, src, {}};
  {
    Type next = src;
    std::erase_if(next.reduce_axes, [&](const std::string& a) { return mesh.axis_size(a) == 1 && !dst.is_partial_over(a); });
    if (next.reduce_axes.empty()) next.op = ReduceOp::none;
    if (!(next == src)) pre.add(Op::local, next, {}, {});
  }
  std::vector<Step> steps = pre.steps;
  const Type start = pre.cur;
  std::vector<Step> partials = reduce_partials(mesh, start, dst);
  steps.insert(steps.end(), partials.begin(), partials.end());
  const Type from = steps.empty() ? src : steps.back().out;
  std::optional<std::vector<Step>> rest;
  if (mesh_ordered(mesh, from) && mesh_ordered(mesh, dst)) {
    std::vector<Step> g = greedy_per_axis_steps(mesh, from, dst);
    if (!has_exchange(g) && arrives(g, from, dst)) rest = std::move(g);
  }
  if (!rest) rest = graph_plan(mesh, from, dst, opts, max_graph_states);
  if (rest) {
    steps.insert(steps.end(), rest->begin(), rest->end());
  } else {
    steps = pre.steps;
    std::vector<Step> g = naive_steps(mesh, start, dst);
    steps.insert(steps.end(), g.begin(), g.end());
  }
  if (!arrives(steps, src, dst))
    throw Error(fmt::format("dtensor: no collective plan of {} -> {} on mesh {}", src, dst, mesh));
  if (!steps.empty()) steps.back().out = dst;  // the target's order of pending axes
  return steps;
}

std::int64_t padded_step_bytes(const Mesh& mesh, const Step& step) {
  if (!step.communicates()) return 0;
  std::int64_t g = 1;
  for (const auto& a : step.axes) g *= mesh.axis_size(a);
  // Every block padded to the largest (ceil) one: DTensor pads each shard per mesh dim, and
  // ceil(ceil(n / a) / b) = ceil(n / (a b)), so the padded block is the largest ceil block.
  const std::int64_t in = step.in.max_local_bytes(mesh), out = step.out.max_local_bytes(mesh);
  switch (step.op) {
    case Op::all_gather: return (g - 1) * in;                       // a padded in-block from each other member
    case Op::all_to_all: return (g - 1) * ((out + g - 1) / g);     // a padded 1/g of the out-block from each
    case Op::reduce_scatter: return (g - 1) * out;                  // a padded share from each
    case Op::all_reduce: return 2 * (g - 1) * in / g;               // ring
    default: return estimate_step_bytes(mesh, step);
  }
}


}  // namespace rules

// Pre: src and dst compatible on mesh, size-1 axes kept (they count as mesh dims).
std::vector<Step> dtensor_steps(const Mesh& mesh, const Type& src, const Type& dst, const SynthOptions& opts,
                                std::size_t max_graph_states, bool* faithful) {
  const Layout from = layout_of(mesh, src), to = layout_of(mesh, dst);
  const ReduceOp op = op_of(src, dst);
  const bool graph = !default_order(from) || !default_order(to);
  const bool partial_ops = src.op != ReduceOp::none || dst.op != ReduceOp::none;
  const std::int64_t bytes = src.global_elements() * static_cast<std::int64_t>(size_of(src.dtype));
  const Topo topo(mesh);
  const Weigh dtensor_cost = [&](const Layout& l, const Transform& t) -> std::optional<double> {
    // Shard -> Partial comes only from the target-directed transitions, at no search cost.
    return (t.from >= 0 && t.to == kPartial) ? 0.0 : step_cost(topo, l, bytes, t);
  };
  std::optional<std::vector<Transform>> ts =
      graph ? graph_transforms(from, to, partial_ops, max_graph_states, dtensor_cost) : greedy_transforms(mesh, from, to);
  std::optional<std::vector<Step>> steps;
  if (ts) steps = to_steps(mesh, src, *ts, graph, op);
  if (faithful) *faithful = steps.has_value();
  if (!steps) {
    // Not DTensor's plan: a step of it is not exact in the ceil layout (DTensor's nested chunks
    // are another layout there), or its graph was cut short.
    steps = rules::plan(mesh, src, dst, opts, max_graph_states);
  }
  if (!same_layout(steps->empty() ? src : steps->back().out, dst))
    throw Error(fmt::format("dtensor: no collective plan of {} -> {} on mesh {}", src, dst, mesh));
  if (!steps->empty()) steps->back().out = dst;  // the target's order of pending axes
  return *steps;
}

namespace {

// DTensor's local size of a dim of global size n chunked by torch.chunk along `axes` in order
// (Shard.local_shard_size_and_offset), skipping axis `skip` (null: none): its logical shape.
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

std::int64_t dtensor_padded_step_bytes(const Mesh& mesh, const Step& step) { return rules::padded_step_bytes(mesh, step); }

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
