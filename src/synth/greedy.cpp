// `greedy_per_axis`: a baseline for the benchmark that plans one mesh axis at a time, in the
// manner of PyTorch DTensor's default `redistribute` planner for shardings in mesh order. It is
// modelled on that planner, not a reproduction of DTensor 2.15, and is named for what it does:
//  - every mesh axis has a placement: Shard(dim), Replicate or Partial;
//  - pass 1 walks mesh axes inner to outer and applies each axis's transform, except that an
//    axis whose target is Shard(d) while the outer axes sharding d differ between the current
//    and the target placements is only replicated (all-gathered) for now, to undo nested
//    sharding;
//  - pass 2 walks outer to inner and moves each remaining axis to its target with one
//    collective (all-gather, local slice, all-to-all, reduce-scatter, all-reduce).
// A dim split over several mesh axes in another order than the mesh's is gathered on those axes
// first, and a target in another order is reached in mesh order and then permuted. A transform
// that reshard's exact routing cannot express as one step (an axis not at the minor end) gathers
// the axes inside it and slices them back, which is what nested chunking costs.
// Where DTensor 2.15 differs (measured against the real one it plans differently on 13 of 82
// cases): for shard orders other than mesh order it runs a shortest-path planner over
// placements instead of this greedy walk; with several Partial mesh dims it reduce-scatters the
// outer one first and never all-reduces; a size-1 mesh dim counts as sharded (reshard drops
// size-1 axes, which split nothing); uneven shards are padded (nested per mesh dim), where this
// baseline, whose blocks follow reshard's ceil semantics, finishes with an exchange.
#include "builder.hpp"
#include "reshard/synth.hpp"

namespace reshard {

namespace {

using namespace synth;

struct Placement {
  enum Kind { replicate, shard, partial } kind = replicate;
  int dim = -1;
  bool operator==(const Placement&) const = default;
};

Placement placement_of(const Type& t, const std::string& axis) {
  if (t.is_partial_over(axis)) return {Placement::partial, -1};
  int d = t.dim_of(axis);
  return d >= 0 ? Placement{Placement::shard, d} : Placement{};
}

// Mesh index of an axis.
int mesh_pos(const Mesh& m, const std::string& a) { return m.axis_index(a); }

class Greedy {
 public:
  Greedy(const Mesh& m, const Type& s) : m_(m), b_{m, s, {}} {}

  std::vector<Step> run(const Type& t) {
    gather_out_of_order();
    Type goal = in_mesh_order(t);
    const auto& axes = m_.axes();
    // Pass 1: inner to outer.
    for (int i = static_cast<int>(axes.size()) - 1; i >= 0; --i) {
      const std::string& a = axes[i].name;
      Placement want = placement_of(goal, a);
      if (want.kind == Placement::shard && outer_sharding(b_.cur, want.dim, i) != outer_sharding(goal, want.dim, i))
        want = Placement{};
      transform(a, want, goal);
    }
    // Pass 2: outer to inner.
    for (const Axis& ax : axes) transform(ax.name, placement_of(goal, ax.name), goal);
    if (!failed_ && !same_dims(b_.cur, t)) {
      Type next = b_.cur;
      for (int d = 0; d < t.rank(); ++d) next.dims[d].axes = t.dims[d].axes;
      std::vector<std::string> g;
      for (const Axis& ax : axes)
        if (!b_.cur.is_partial_over(ax.name) && (b_.cur.dim_of(ax.name) >= 0)) g.push_back(ax.name);
      add(Op::permute, next, g, {});
    }
    return b_.steps;
  }

 private:
  // Axes of mesh index < i that shard dim d, in mesh order.
  std::vector<std::string> outer_sharding(const Type& t, int d, int i) const {
    std::vector<std::string> r;
    for (int k = 0; k < i; ++k)
      if (t.dim_of(m_.axes()[k].name) == d) r.push_back(m_.axes()[k].name);
    return r;
  }

  Type in_mesh_order(Type t) const {
    for (Dim& d : t.dims)
      std::sort(d.axes.begin(), d.axes.end(), [&](auto& x, auto& y) { return mesh_pos(m_, x) < mesh_pos(m_, y); });
    return t;
  }

  void gather_out_of_order() {
    Type next = b_.cur;
    std::vector<std::string> axes;
    std::vector<int> dims;
    for (int d = 0; d < next.rank(); ++d) {
      auto& ax = next.dims[d].axes;
      std::size_t k = 1;
      while (k < ax.size() && mesh_pos(m_, ax[k - 1]) < mesh_pos(m_, ax[k])) ++k;
      if (k >= ax.size()) continue;
      axes.insert(axes.end(), ax.begin() + k, ax.end());
      ax.resize(k);
      dims.push_back(d);
    }
    if (!axes.empty()) add(Op::all_gather, next, axes, dims);
  }

  // Gathers the axes of dim d from position `from` to the minor end; returns them.
  std::vector<std::string> unnest(int d, std::size_t from) {
    Type next = b_.cur;
    auto& ax = next.dims[d].axes;
    std::vector<std::string> inner(ax.begin() + from, ax.end());
    ax.resize(from);
    add(Op::all_gather, next, inner, {d});
    return inner;
  }
  void slice(int d, const std::vector<std::string>& axes) {
    if (axes.empty()) return;
    Type next = b_.cur;
    for (const auto& a : axes) next.dims[d].axes.push_back(a);
    add(Op::slice, next, axes, {d});
  }
  // Position at which axis a belongs in dim d, in mesh order.
  std::size_t insert_pos(const Type& t, int d, const std::string& a) const {
    const auto& ax = t.dims[d].axes;
    std::size_t p = 0;
    while (p < ax.size() && mesh_pos(m_, ax[p]) < mesh_pos(m_, a)) ++p;
    return p;
  }

  void transform(const std::string& a, Placement want, const Type& goal) {
    Placement have = placement_of(b_.cur, a);
    if (have == want || failed_) return;
    if (have.kind == Placement::shard) {
      // Bring a to the minor end of its dim, gathering whatever is nested inside it.
      auto& ax = b_.cur.dims[have.dim].axes;
      std::size_t p = std::find(ax.begin(), ax.end(), a) - ax.begin();
      std::vector<std::string> inner;
      if (p + 1 < ax.size()) {
        inner = unnest(have.dim, p + 1);
      }
      if (want.kind == Placement::shard && insert_pos(b_.cur, want.dim, a) == b_.cur.dims[want.dim].axes.size()) {
        Type next = b_.cur;
        next.dims[have.dim].axes.pop_back();
        next.dims[want.dim].axes.push_back(a);
        add(Op::all_to_all, next, {a}, {have.dim, want.dim});
      } else {
        unnest(have.dim, b_.cur.dims[have.dim].axes.size() - 1);
        if (want.kind == Placement::shard) place(a, want.dim);
      }
      slice(have.dim, inner);
    } else if (have.kind == Placement::partial) {
      if (want.kind == Placement::shard && insert_pos(b_.cur, want.dim, a) == b_.cur.dims[want.dim].axes.size()) {
        Type next = b_.cur;
        erase(next.reduce_axes, a);
        if (next.reduce_axes.empty()) next.op = ReduceOp::none;
        next.dims[want.dim].axes.push_back(a);
        if (add(Op::reduce_scatter, next, {a}, {want.dim})) return;
      }
      if (failed_) return;
      b_.all_reduce({a});
      if (want.kind == Placement::shard) place(a, want.dim);
    } else if (want.kind == Placement::shard) {
      place(a, want.dim);
      return;
    }
    if (want.kind == Placement::partial) {
      Type next = b_.cur;
      next.op = goal.op;
      next.reduce_axes.push_back(a);
      add(Op::local, next, {a}, {}, LocalKind::make_partial);
    }
  }

  // Replicate -> Shard(d): a local slice at a's mesh-order position in d; axes after that
  // position are gathered and sliced back behind it.
  void place(const std::string& a, int d) {
    std::size_t p = insert_pos(b_.cur, d, a);
    std::vector<std::string> inner;
    if (p < b_.cur.dims[d].axes.size()) inner = unnest(d, p);
    std::vector<std::string> axes{a};
    axes.insert(axes.end(), inner.begin(), inner.end());
    slice(d, axes);
  }

  // A transform reshard's exact routing cannot express (uneven blocks that do not nest) stops
  // the walk; greedy_per_axis_steps() then finishes with an exchange.
  bool add(Op op, Type out, std::vector<std::string> axes, std::vector<int> dims,
           LocalKind kind = LocalKind::relabel) {
    if (failed_) return false;
    failed_ = !b_.add(op, std::move(out), std::move(axes), std::move(dims), kind);
    return !failed_;
  }

  const Mesh& m_;
  Builder b_;
  bool failed_ = false;
};

}  // namespace

std::vector<Step> greedy_per_axis_steps(const Mesh& mesh, const Type& src, const Type& dst) {
  std::vector<Step> steps = Greedy(mesh, src).run(dst);
  // Each step was checked on the way; a plan that did not arrive (a step the routing could not
  // make exact, with uneven blocks) finishes with an exchange so the baseline stays correct.
  Type last = steps.empty() ? src : steps.back().out;
  if (!(last == dst)) {
    Builder b{mesh, last, {}};
    std::vector<std::string> pending;
    for (const auto& a : last.reduce_axes)
      if (!dst.is_partial_over(a)) pending.push_back(a);
    b.all_reduce(pending);
    b.exchange_to(dst);
    b.make_partial(dst);
    steps.insert(steps.end(), b.steps.begin(), b.steps.end());
  }
  return steps;
}

}  // namespace reshard
