// `dtensor`: a baseline that follows the rules PyTorch DTensor 2.15's `redistribute` plans by,
// for comparison (README, "Strategies"). A type maps to DTensor's layout one mesh axis at a
// time: Shard(d) where the axis splits dim d (its position in d's axis list is the shard
// order), Partial where it is pending, Replicate otherwise. The rules followed:
//  - both shardings in mesh order: the greedy per-mesh-dim transform (greedy.cpp: inner to
//    outer undoing nested sharding, then outer to inner);
//  - any other shard order: a shortest-path (Dijkstra) planner over layouts whose edges are
//    DTensor's six one-axis transitions, each on the last axis of a dim's shard order:
//    Shard(a)->Shard(b) all-to-all, Shard->Replicate all-gather, Partial->Replicate
//    all-reduce, Replicate->Shard slice, Partial->Shard reduce-scatter, Replicate->Partial;
//  - several Partial mesh dims to reduce: each is reduce-scattered, outer mesh dim first, and
//    none is all-reduced (onto the dim the target shards it on, else onto the first dim where
//    the step is exact, gathered back later);
//  - a size-1 mesh dim counts as sharded: its steps are planned and emitted (they move 0 B);
//  - never point-to-point: no exchange, no permute;
//  - uneven shards are padded, nested per mesh dim: the plan's byte figures count padded
//    blocks (dtensor_padded_bytes), while the data keeps reshard's ceil layout, so execution
//    stays exact.
// Where it differs: the graph planner weighs steps by reshard's cost model (DTensor uses its
// own one_step_redistribute_cost); where reshard's exact routing cannot express a step on
// uneven blocks that do not nest (DTensor pads and moves them anyway), the plan gathers
// everything and slices (all-gather, slice), which is collective-only but moves more.
#include <algorithm>
#include <map>
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
    auto [g, idx] = open.top();
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

}  // namespace

// Pre: src and dst compatible on mesh, size-1 axes kept (they count as sharded).
std::vector<Step> dtensor_steps(const Mesh& mesh, const Type& src, const Type& dst, const SynthOptions& opts,
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

std::int64_t dtensor_padded_step_bytes(const Mesh& mesh, const Step& step) {
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

}  // namespace reshard
