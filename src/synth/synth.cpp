// The synthesizer. Shape of every collective plan (docs/design.md 3, "shrink, then move, then grow"):
//   1. reduce-scatter pending axes the target splits a dim over (shrinks), all-reduce where a
//      reduce-scatter cannot be exact;
//   2. slice onto their target dims the axes the target uses and the source does not (local);
//   3. move: all-to-alls and permutes that keep local size, until every dim holds its target
//      axes, major first, with the axes still to be gathered at its minor end;
//   4. all-reduce the pending axes the target replicates (data is smallest here), then one
//      all-gather of every axis the target does not use;
//   5. turn replicated axes into the target's pending axes (local).
// Variants of this (gather early when memory allows; one exchange after the shrink), the
// greedy_per_axis baseline and a pure exchange plan are priced by the cost model; the cheapest
// collective one bounds a best-first search over typed steps (search.hpp), which may find a
// cheaper plan (several axes of several dims in one all-to-all, axes swapped between dims);
// the cheapest plan that keeps the memory bound wins, so it is never worse than any of them.
// Every step is checked with step_is_valid(); a variant whose step would not be exact (uneven
// blocks that do not nest) finishes with an exchange instead.
#include "reshard/synth.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "reshard/error.hpp"
#include "builder.hpp"
#include "search.hpp"
#include "reshard/route.hpp"
#include "reshard/workspace.hpp"

namespace reshard {

std::string_view name_of(Strategy s) {
  switch (s) {
    case Strategy::reshard: return "reshard";
    case Strategy::naive: return "naive";
    case Strategy::greedy_per_axis: return "greedy_per_axis";
    case Strategy::exchange: return "exchange";
    case Strategy::dtensor: return "dtensor";
  }
  return "?";
}

Strategy strategy_from_name(std::string_view name) {
  for (Strategy s : {Strategy::reshard, Strategy::naive, Strategy::greedy_per_axis, Strategy::exchange, Strategy::dtensor})
    if (name_of(s) == name) return s;
  throw Error(fmt::format("unknown strategy '{}'; expected reshard, naive, greedy_per_axis, dtensor or exchange", name));
}

void check_compatible(const Mesh& mesh, const Type& src, const Type& dst) {
  src.validate(mesh);
  dst.validate(mesh);
  if (src.dtype != dst.dtype)
    throw MismatchError(fmt::format("dtypes differ: source {} is {}, target {} is {}", src, src.dtype, dst, dst.dtype));
  if (src.global_shape() != dst.global_shape())
    throw MismatchError(fmt::format("global shapes differ: source {} has [{}], target {} has [{}]", src,
                                    fmt::join(src.global_shape(), ", "), dst, fmt::join(dst.global_shape(), ", ")));
  if (src.op != ReduceOp::none && dst.op != ReduceOp::none && src.op != dst.op)
    throw MismatchError(fmt::format("the reduction changes from {} to {}; a pending {} cannot become a {}",
                                    src.op, dst.op, src.op, dst.op));
}

namespace synth {

// Full replication, then slice: XLA's fallback and what simple systems do.
std::vector<Step> naive_steps(const Mesh& m, const Type& s, const Type& t) {
  Builder b{m, s, {}};
  std::vector<std::string> reduce_now;
  for (const auto& r : s.reduce_axes)
    if (!t.is_partial_over(r)) reduce_now.push_back(r);
  b.all_reduce(reduce_now);
  Type full = b.cur;
  std::vector<std::string> axes;
  std::vector<int> dims;
  for (int d = 0; d < full.rank(); ++d) {
    if (full.dims[d].axes.empty()) continue;
    axes.insert(axes.end(), full.dims[d].axes.begin(), full.dims[d].axes.end());
    full.dims[d].axes.clear();
    dims.push_back(d);
  }
  if (!axes.empty()) b.add(Op::all_gather, full, axes, dims);
  Type sliced = b.cur;
  axes.clear();
  dims.clear();
  for (int d = 0; d < t.rank(); ++d) {
    if (t.dims[d].axes.empty()) continue;
    sliced.dims[d].axes = t.dims[d].axes;
    axes.insert(axes.end(), t.dims[d].axes.begin(), t.dims[d].axes.end());
    dims.push_back(d);
  }
  if (!axes.empty()) b.add(Op::slice, sliced, axes, dims);
  b.make_partial(t);
  return b.steps;
}

}  // namespace synth

namespace {

using namespace synth;

// All-to-alls and permutes from cur's dims to exactly D's dims (same set of axes). Returns
// false if some step would not be exact.
bool move_to(Builder& b, const Type& D) {
  const Mesh& m = b.mesh;
  auto dest = [&](const std::string& a) { return D.dim_of(a); };
  auto group_axes = [&](const Type& from, const Type& to) {
    std::vector<std::string> axes;
    for (std::size_t d = 0; d < from.dims.size(); ++d)
      if (from.dims[d].axes != to.dims[d].axes) {
        for (const auto& a : from.dims[d].axes)
          if (!contains(axes, a)) axes.push_back(a);
        for (const auto& a : to.dims[d].axes)
          if (!contains(axes, a)) axes.push_back(a);
      }
    // Number the group in mesh order: stable and independent of how the step was found.
    std::vector<std::string> ordered;
    for (const Axis& ax : m.axes())
      if (contains(axes, ax.name)) ordered.push_back(ax.name);
    return ordered;
  };
  auto profile_equal = [&](const Type& x) {
    for (int d = 0; d < x.rank(); ++d)
      if (x.num_blocks(m, d) != D.num_blocks(m, d)) return false;
    return true;
  };
  for (int iter = 0; iter < 4 * m.num_axes() + 4; ++iter) {
    const Type& cur = b.cur;
    if (same_dims(cur, D)) return true;
    if (profile_equal(cur)) {
      Type next = cur;
      for (int d = 0; d < cur.rank(); ++d) next.dims[d].axes = D.dims[d].axes;
      return b.add(Op::permute, next, group_axes(cur, next), {});
    }
    // An all-to-all: the longest minor suffix of a dim whose axes all go to one other dim.
    bool moved = false;
    for (int i = 0; i < cur.rank() && !moved; ++i) {
      const auto& ax = cur.dims[i].axes;
      if (ax.empty() || dest(ax.back()) == i) continue;
      int j = dest(ax.back());
      std::size_t start = ax.size();
      while (start > 0 && dest(ax[start - 1]) == j) --start;
      std::vector<std::string> M(ax.begin() + start, ax.end());
      Type next = cur;
      next.dims[i].axes.resize(start);
      for (const auto& a : M) next.dims[j].axes.push_back(a);
      if (!b.add(Op::all_to_all, std::move(next), M, {i, j})) return false;
      moved = true;
    }
    if (moved) continue;
    // No misplaced axis at a minor end: reorder within dims so that they are.
    Type next = cur;
    for (int d = 0; d < cur.rank(); ++d) {
      std::vector<std::string> keep, out;
      for (const auto& a : D.dims[d].axes)
        if (contains(cur.dims[d].axes, a)) keep.push_back(a);
      for (int j = 0; j < cur.rank(); ++j)
        for (const auto& a : cur.dims[d].axes)
          if (dest(a) == j && j != d) out.push_back(a);
      keep.insert(keep.end(), out.begin(), out.end());
      next.dims[d].axes = keep;
    }
    if (same_dims(next, cur)) return false;
    if (!b.add(Op::permute, next, group_axes(cur, next), {})) return false;
  }
  return false;
}

struct Variant {
  bool early_gather = false;          // gather unneeded minor axes before moving, if it fits
  bool exchange_after_shrink = false;  // one exchange replaces the move and grow phases
  bool direct_permute = false;        // same blocks per dim as the target: one permute first
};

std::vector<Step> collective_plan(const Mesh& m, const Type& s, const Type& t, Variant v,
                                  std::int64_t bound) {
  Builder b{m, s, {}};
  std::vector<std::string> reduce_now, rs_axes, ar_late;
  for (const auto& r : s.reduce_axes)
    if (!t.is_partial_over(r)) reduce_now.push_back(r);
  // 1. Reduce-scatter onto the target's dims, in the target's order.
  for (int d = 0; d < t.rank(); ++d)
    for (const auto& a : t.dims[d].axes)
      if (contains(reduce_now, a)) rs_axes.push_back(a);
  for (const auto& r : reduce_now)
    if (!contains(rs_axes, r)) ar_late.push_back(r);
  if (!rs_axes.empty()) {
    Type next = b.cur;
    std::vector<int> dims;
    for (const auto& a : rs_axes) {
      erase(next.reduce_axes, a);
      int d = t.dim_of(a);
      next.dims[d].axes.push_back(a);
      if (!std::count(dims.begin(), dims.end(), d)) dims.push_back(d);
    }
    if (next.reduce_axes.empty()) next.op = ReduceOp::none;
    if (!b.add(Op::reduce_scatter, next, rs_axes, dims)) b.all_reduce(rs_axes);
  }
  // A permute straight to the target's dims when every dim already has as many blocks as in
  // the target (substituting an axis of equal size): no slice, no gather.
  if (v.direct_permute) {
    Type next = b.cur;
    bool same_profile = true;
    for (int d = 0; d < t.rank(); ++d) {
      next.dims[d].axes = t.dims[d].axes;
      same_profile = same_profile && next.num_blocks(m, d) == b.cur.num_blocks(m, d);
    }
    for (const auto& a : t.reduce_axes) same_profile = same_profile && next.dim_of(a) < 0;
    if (same_profile && !same_dims(next, b.cur)) {
      std::vector<std::string> axes;
      for (const Axis& ax : m.axes())
        if (!b.cur.is_partial_over(ax.name) && (b.cur.dim_of(ax.name) >= 0 || next.dim_of(ax.name) >= 0))
          axes.push_back(ax.name);
      b.add(Op::permute, next, axes, {});
    }
  }
  // 2. Shrink: slice the axes the target uses and the current type does not.
  {
    Type next = b.cur;
    std::vector<std::string> axes;
    std::vector<int> dims;
    for (int d = 0; d < t.rank(); ++d)
      for (const auto& a : t.dims[d].axes)
        if (!b.cur.uses(a)) {
          next.dims[d].axes.push_back(a);
          axes.push_back(a);
          if (!std::count(dims.begin(), dims.end(), d)) dims.push_back(d);
        }
    if (!axes.empty() && !b.add(Op::slice, next, axes, dims)) {
      b.all_reduce(ar_late);
      b.exchange_to(t);
      b.make_partial(t);
      return b.steps;
    }
  }
  auto gather_minor = [&](bool only_if_fits) {
    // Remove, from the minor end of each dim, the axes the target does not use.
    Type next = b.cur;
    std::vector<std::string> axes;
    std::vector<int> dims;
    for (int d = 0; d < next.rank(); ++d) {
      auto& ax = next.dims[d].axes;
      std::size_t k = ax.size();
      while (k > 0 && t.dim_of(ax[k - 1]) < 0) --k;
      if (k == ax.size()) continue;
      axes.insert(axes.end(), ax.begin() + k, ax.end());
      ax.resize(k);
      dims.push_back(d);
    }
    if (axes.empty()) return true;
    if (only_if_fits && next.max_local_bytes(m) > bound) return true;
    return b.add(Op::all_gather, next, axes, dims);
  };
  if (v.early_gather && !gather_minor(true)) {
    b.all_reduce(ar_late);
    b.exchange_to(t);
    b.make_partial(t);
    return b.steps;
  }
  if (v.exchange_after_shrink) {
    b.all_reduce(ar_late);
    b.exchange_to(t);
    b.make_partial(t);
    return b.steps;
  }
  // 3. Move: every dim to its target axes followed by the axes still to gather.
  Type D = b.cur;
  for (int d = 0; d < t.rank(); ++d) {
    D.dims[d].axes = t.dims[d].axes;
    for (const auto& a : b.cur.dims[d].axes)
      if (t.dim_of(a) < 0) D.dims[d].axes.push_back(a);
  }
  bool ok = move_to(b, D);
  // 4. Grow.
  b.all_reduce(ar_late);
  if (ok) ok = gather_minor(false);
  if (!ok) b.exchange_to(t);
  b.make_partial(t);
  return b.steps;
}

std::vector<Step> exchange_plan(const Mesh& m, const Type& s, const Type& t) {
  Builder b{m, s, {}};
  std::vector<std::string> reduce_now;
  for (const auto& r : s.reduce_axes)
    if (!t.is_partial_over(r)) reduce_now.push_back(r);
  b.all_reduce(reduce_now);
  b.exchange_to(t);
  b.make_partial(t);
  return b.steps;
}

std::int64_t plan_peak(const Mesh& m, const Type& s, const std::vector<Step>& steps) {
  std::int64_t p = s.max_local_bytes(m);
  for (const Step& st : steps) p = std::max(p, st.out.max_local_bytes(m));
  return p;
}

// Estimated bytes the busiest device receives over a plan (sum of per-step maxima).
std::int64_t plan_bytes(const Mesh& m, const std::vector<Step>& steps) {
  std::int64_t b = 0;
  for (const Step& st : steps) b += estimate_step_bytes(m, st);
  return b;
}

std::string describe(const std::vector<Step>& steps) {
  std::vector<std::string_view> names;
  for (const Step& st : steps) names.push_back(name_of(st.op));
  return fmt::format("{}", fmt::join(names, ", "));
}

// Relabel the ends: plans are made without size-1 axes.
std::vector<Step> ends_relabeled(std::vector<Step> steps, const Type& src, const Type& dst) {
  if (steps.empty()) {
    if (!(src == dst)) steps.push_back(Step{Op::local, src, dst, {}, {}, LocalKind::relabel});
  } else {
    steps.front().in = src;
    steps.back().out = dst;
  }
  return steps;
}

// The largest workspace the executor allocates for these steps on any device (MPI rules).
std::int64_t max_workspace(std::vector<Step> steps, const Mesh& mesh, const Type& src, const Type& dst) {
  Plan p;
  p.mesh = mesh;
  p.src = src;
  p.dst = dst;
  p.steps = std::move(steps);
  const std::vector<std::int64_t> ws = workspace_per_device(p);
  return ws.empty() ? 0 : *std::max_element(ws.begin(), ws.end());
}

// The dtensor baseline's figures are DTensor's (its nested chunks, its padded collectives);
// the data (and so the simulator and the executor) keeps the ceil layout, whose figures a note
// gives where they differ.
void figures_like_dtensor(Plan& plan, bool faithful) {
  // Where DTensor's plan could not be followed the plan is not DTensor's: its figures count the
  // ceil layout's blocks, each padded to the largest, as before the baseline was measured.
  if (!faithful) {
    std::int64_t total = 0, actual = plan.stats.bytes_recv_max;
    for (std::size_t k = 0; k < plan.steps.size(); ++k) {
      const std::int64_t b = std::max(plan.stats.step_bytes_recv_max[k], dtensor_padded_step_bytes(plan.mesh, plan.steps[k]));
      plan.stats.step_bytes_recv_max[k] = b;
      total += b;
    }
    plan.stats.bytes_recv_max = std::max(actual, total);
    plan.notes.push_back("DTensor's steps are not exact in reshard's ceil layout here (uneven blocks that do not nest): "
                         "planned by the earlier DTensor-like rules instead, bytes counting padded ceil blocks");
    return;
  }
  const DtensorFigures f = dtensor_figures(plan.mesh, plan.src, plan.steps);
  const std::int64_t moved = plan.stats.bytes_recv_max, held = plan.stats.max_intermediate_bytes;
  plan.stats.step_bytes_recv_max = f.step_bytes_recv_max;
  plan.stats.bytes_recv_max = f.bytes_recv_max;
  plan.stats.max_intermediate_bytes = f.max_local_bytes;
  if (f.bytes_recv_max != moved || f.max_local_bytes != held)
    plan.notes.push_back(fmt::format("figures are DTensor's (nested chunks, padded collectives): {} B received, "
                                     "{} B largest local array; in reshard's ceil layout {} B and {} B",
                                     f.bytes_recv_max, f.max_local_bytes, moved, held));
}

}  // namespace

std::vector<Step> greedy_per_axis_steps(const Mesh& mesh, const Type& src, const Type& dst);
std::vector<Step> dtensor_steps(const Mesh& mesh, const Type& src, const Type& dst, const SynthOptions& opts,
                                std::size_t max_graph_states, bool* faithful = nullptr);
// The dtensor strategy's graph planner explores up to this many layouts (its planning time on
// 65,536 devices is about 1.5 s at 20,000); as an incumbent of the reshard search, far fewer,
// so that synthesis keeps its time budget (a plan it does not reach is simply not an incumbent).
static std::size_t dtensor_graph_states(const Mesh& m, bool incumbent) {
  if (incumbent) return m.num_devices() <= 1024 ? 400 : 0;
  return m.num_devices() <= 4096 ? 20000 : 2000;
}

Plan synthesize(const Mesh& mesh, const Type& src, const Type& dst, const SynthOptions& opts) {
  check_compatible(mesh, src, dst);
  Plan plan;
  plan.mesh = mesh;
  plan.src = src;
  plan.dst = dst;
  plan.strategy = std::string(name_of(opts.strategy));
  Type s = strip_trivial(src, mesh), t = strip_trivial(dst, mesh);
  std::int64_t bound = std::max(src.max_local_bytes(mesh), dst.max_local_bytes(mesh));

  auto price = [&](const std::vector<Step>& steps) {
    double c = 0;
    for (const Step& st : steps) c += estimate_step_s(mesh, st, opts);
    return c;
  };
  std::vector<Step> best;
  bool dtensor_faithful = true;  // the dtensor strategy made DTensor's own plan
  switch (opts.strategy) {
    case Strategy::naive: best = naive_steps(mesh, s, t); break;
    case Strategy::exchange: best = exchange_plan(mesh, s, t); break;
    case Strategy::greedy_per_axis: best = greedy_per_axis_steps(mesh, s, t); break;
    case Strategy::dtensor:  // size-1 axes count
      best = dtensor_steps(mesh, src, dst, opts, dtensor_graph_states(mesh, false), &dtensor_faithful);
      break;
    case Strategy::reshard: {
      double best_cost = std::numeric_limits<double>::infinity();
      double collective_cost = best_cost;
      // The workspace is part of the memory bound: a plan whose scratch and staging pass it on
      // some device (two large intermediates back to back, neither fitting in the output)
      // gives way to the cheapest one that keeps it. The exchange plan always does on MPI (its
      // one intermediate is the source layout; exchange stages nothing, make_partial runs in
      // place). Checked only with the exact figures (exact_stats; analyze() refuses larger
      // meshes), by classes, O(devices) per plan, and only for a plan that would win.
      const bool exact_workspace = opts.exact_stats && mesh.num_devices() <= kMaxExactStatsDevices;
      std::vector<Step> best_collective;
      // The cheapest plan set aside for its workspace, as a fallback should none fit.
      std::vector<Step> over;
      double over_cost = std::numeric_limits<double>::infinity();
      std::int64_t over_bytes = 0;
      // Collective plans raise the search's bar only where they fit; any plan may win.
      auto consider = [&](std::vector<Step>& steps, double c, bool may_bound_search) {
        if (c >= best_cost && (!may_bound_search || c >= collective_cost)) return;
        if (exact_workspace) {
          const std::int64_t w = max_workspace(ends_relabeled(steps, src, dst), mesh, src, dst);
          if (w > bound) {
            if (c < over_cost) over_cost = c, over = steps, over_bytes = w;
            return;
          }
        }
        const bool has_exchange = std::any_of(steps.begin(), steps.end(), [](const Step& x) { return x.op == Op::exchange; });
        if (may_bound_search && !has_exchange && c < collective_cost) collective_cost = c, best_collective = steps;
        if (c < best_cost) best_cost = c, best = std::move(steps);
      };
      std::vector<Step> ex = exchange_plan(mesh, s, t);
      for (Variant v : {Variant{false, false, false}, Variant{true, false, false}, Variant{false, true, false},
                        Variant{false, false, true}}) {
        std::vector<Step> steps = collective_plan(mesh, s, t, v, bound);
        if (plan_peak(mesh, s, steps) > bound) continue;
        consider(steps, price(steps), true);
      }
      // greedy_per_axis is an incumbent too, where it keeps the memory bound.
      {
        std::vector<Step> g = greedy_per_axis_steps(mesh, s, t);
        if (plan_peak(mesh, s, g) <= bound) consider(g, price(g), true);
      }
      // So is the dtensor baseline, planned as the strategy plans it (size-1 axes kept, their
      // steps emitted) and without size-1 axes.
      for (bool stripped : {true, false}) {
        if (!stripped && s == src && t == dst) break;  // no size-1 axes: the same plan
        const std::size_t states = dtensor_graph_states(mesh, true);
        std::vector<Step> d = stripped ? dtensor_steps(mesh, s, t, opts, states) : dtensor_steps(mesh, src, dst, opts, states);
        if (plan_peak(mesh, s, d) <= bound) consider(d, price(d), true);
      }
      // The search over typed steps, bounded by the cheapest collective plan so far (the
      // exchange plan is weighed after it, so that the collective plan is the best one known).
      synth::SearchLimits limits = synth::default_limits(mesh, s);
      limits.workspace_rule = exact_workspace;
      const double ex_cost = price(ex);
      if (auto found = synth::search_plan(mesh, s, t, bound, opts, collective_cost, limits, ex_cost))
        consider(*found, price(*found), true);
      consider(ex, ex_cost, false);
      if (over_cost < best_cost && std::isfinite(best_cost))
        plan.notes.push_back(fmt::format("the cheapest plan ({}) would need {} B of workspace, over the bound of {} B; "
                                         "the cheapest plan within it is used", describe(over), over_bytes, bound));
      else if (!std::isfinite(best_cost) && std::isfinite(over_cost)) {  // none fits (not seen on MPI)
        plan.notes.push_back(fmt::format("no plan keeps the workspace within the bound of {} B; this one needs {} B",
                                         bound, over_bytes));
        best_cost = over_cost, best = std::move(over);
      }
      // No candidate priced finite: `best` is still empty and must not become a relabel.
      if (!std::isfinite(best_cost))
        throw Error(fmt::format("the cost model gives no plan of {} -> {} on mesh {} a finite cost (topology {}): "
                                "the link figures are out of range", src, dst, mesh, opts.topology.to_string()));
      bool uses_exchange = std::any_of(best.begin(), best.end(), [](const Step& x) { return x.op == Op::exchange; });
      if (uses_exchange && collective_cost < std::numeric_limits<double>::infinity())
        plan.notes.push_back(fmt::format(
            "exchange chosen: the best collective plan ({}) would receive about {} B against {} B, and is "
            "estimated at {:.3g} s against {:.3g} s", describe(best_collective), plan_bytes(mesh, best_collective),
            plan_bytes(mesh, best), collective_cost, best_cost));
      else if (uses_exchange)
        plan.notes.push_back("block boundaries do not nest (uneven sizes): no exact collective plan; exchange used");
      break;
    }
  }
  plan.steps = ends_relabeled(std::move(best), src, dst);
  if (opts.exact_stats) analyze(plan);
  if (opts.strategy == Strategy::dtensor && opts.exact_stats) figures_like_dtensor(plan, dtensor_faithful);
  plan.stats.est_time_s = estimate_plan_s(plan, opts);
  if (!std::isfinite(plan.stats.est_time_s))
    throw Error(fmt::format("the cost model gives the {} plan of {} -> {} on mesh {} no finite cost (topology {})",
                            plan.strategy, src, dst, mesh, opts.topology.to_string()));
  return plan;
}

}  // namespace reshard
