// Bounded best-first search over typed steps (see search.hpp).
//
// Why a search: the constructive plan of synth.cpp fixes an order of moves (shrink, move one
// minor suffix at a time, grow) and misses plans that move several axes of several dims at
// once, or swap equal-size axes between dims. Enumerating steps and letting the cost model
// choose finds those; the constructive plans remain the incumbents that bound the search.
//
// Admissible estimate of the cost to go from a type C (so A* never prunes a cheaper plan):
//  - if C cannot become the target by local steps alone, at least one collective remains,
//    and every collective pays at least two rounds of the smallest latency of any link;
//  - if C has no pending reduction and its blocks divide evenly, some sampled device still
//    lacks bytes of its target block, and they arrive at best at the highest bandwidth.
//    (With even blocks every step's estimate is at least what each device receives in it.)
#include "search.hpp"
#include "reshard/workspace.hpp"

#include <algorithm>
#include <limits>
#include <queue>
#include <string>
#include <unordered_map>

#include "../core/indexed.hpp"
#include "builder.hpp"
#include "reshard/route.hpp"

namespace reshard::synth {

namespace {

using Axes = std::vector<std::string>;

struct Move {
  Op op;
  Type out;
  Axes axes;
  std::vector<int> dims;
  LocalKind kind = LocalKind::relabel;
};

// Calls f(appended) for every way of appending each of `items` to the minor end of one of
// `rank` dims, in every order: appended[d] is what dim d gains, major first.
template <typename F>
void for_each_placement(const Axes& items, int rank, F&& f) {
  std::vector<Axes> app(rank);
  auto rec = [&](auto&& self, std::size_t i) -> void {
    if (i == items.size()) return f(app);
    for (int d = 0; d < rank; ++d)
      for (std::size_t pos = 0; pos <= app[d].size(); ++pos) {
        app[d].insert(app[d].begin() + static_cast<std::ptrdiff_t>(pos), items[i]);
        self(self, i + 1);
        app[d].erase(app[d].begin() + static_cast<std::ptrdiff_t>(pos));
      }
  };
  rec(rec, 0);
}

// Calls f(subset) for every non-empty subset of v (in a fixed order).
template <typename F>
void for_each_subset(const Axes& v, F&& f) {
  const std::uint32_t n = static_cast<std::uint32_t>(v.size());
  for (std::uint32_t mask = 1; mask < (1u << n); ++mask) {
    Axes s;
    for (std::uint32_t i = 0; i < n; ++i)
      if (mask >> i & 1) s.push_back(v[i]);
    f(s);
  }
}

// Calls f(len) for every choice of how many minor axes to take from each dim of c (len[d]
// from 0 to the dim's axis count; all zero included).
template <typename F>
void for_each_suffix_choice(const Type& c, F&& f) {
  const int r = c.rank();
  std::vector<int> len(r, 0);
  auto rec = [&](auto&& self, int d) -> void {
    if (d == r) return f(len);
    for (int k = 0; k <= static_cast<int>(c.dims[d].axes.size()); ++k) {
      len[d] = k;
      self(self, d + 1);
    }
    len[d] = 0;
  };
  rec(rec, 0);
}

class Search {
 public:
  Search(const Mesh& m, const Type& s, const Type& t, std::int64_t bound, const SynthOptions& o,
         const SearchLimits& lim)
      : m_(m), s_(s), t_(t), bound_(bound), opts_(o), lim_(lim), it_(t, m) {
    min_lat_ = std::numeric_limits<double>::infinity();
    max_bw_ = 0;
    for (const Axis& a : m.axes()) {
      if (a.size == 1) continue;
      Link l = o.topology.link(a.name);
      min_lat_ = std::min(min_lat_, l.latency_s);
      max_bw_ = std::max(max_bw_, l.bandwidth_GBps);
    }
    if (!std::isfinite(min_lat_)) min_lat_ = 0, max_bw_ = o.topology.default_link.bandwidth_GBps;
    for (const auto& r : t.reduce_axes) t_pending_.push_back(r);
    // Devices whose missing bytes bound the cost to go: all on small meshes, a spread beyond.
    int P = m.num_devices();
    int n = std::min(P, P > 256 ? 16 : 64);
    for (int i = 0; i < n; ++i) sample_.push_back(detail::coords_of(m, static_cast<int>((static_cast<std::int64_t>(i) * P) / n)));
    sample_.push_back(detail::coords_of(m, P - 1));
    divisible_t_ = divisible(it_);
  }

  // The plan of the search, or nothing.
  //
  // First by type: a type reached more cheaply prunes a dearer path to it. That is exact for
  // the cost (the cost of the rest does not depend on how the type was reached), and so under
  // the workspace rule too as long as no goal is passed over for its workspace: the search then
  // ran as it would have without the rule, and its cheapest plan happens to keep the bound.
  //
  // The workspace, though, is a function of the whole plan: buffer_plan assigns slots from the
  // last step back, scratch is sized to the largest intermediate of each slot, staging goes
  // where the final capacities leave room, and the reduce-scatter budget is the bound less both
  // slots. The cheaper path to a type may leave every completion over the bound where a dearer
  // path does not, and no summary of a prefix short of the prefix itself decides that (it is not
  // even monotone: larger scratch can shrink the whole by giving staging a place). So once a
  // goal has been passed over, the search runs again over paths (paths_below): it first builds
  // the graph of every type some plan cheaper than the first pass's result could pass through,
  // with the exact cost from each type to the target (ignoring the workspace) as the estimate,
  // then takes paths in the order of the cheapest plan through them, weighing each plan that
  // reaches the target with its own workspace. The first plan that keeps the bound is the
  // cheapest that does (within the depth): nothing is pruned for the path that reached it.
  // The second pass looks no higher than a plan known to keep every bound (`fallback`).
  std::optional<std::vector<Step>> run(double ub, double fallback) {
    std::optional<std::vector<Step>> found = by_type(ub);
    if (!lim_.workspace_rule || !passed_over_) return found;
    std::optional<std::vector<Step>> better = paths_below(found ? cost_of(*found) : std::min(ub, fallback));
    return better ? better : found;
  }

 private:
  double cost_of(const std::vector<Step>& steps) const {
    double c = 0;
    for (const Step& st : steps) c += estimate_step_s(m_, st, opts_);
    return c;
  }

  // A* below `ub` with types as states. Sets passed_over_ when a goal is passed over for its
  // workspace.
  std::optional<std::vector<Step>> by_type(double ub) {
    ub_ = ub;
    nodes_.push_back({s_, -1, {}, 0.0, 0});
    seen_[key(s_)] = 0.0;
    // (f, node): lowest f first, ties in the order found (deterministic). Preferring deeper
    // nodes on ties was tried: it expands more invalid steps on large meshes.
    using Entry = std::pair<double, int>;
    auto cmp = [](const Entry& a, const Entry& b) { return a.first != b.first ? a.first > b.first : a.second > b.second; };
    std::priority_queue<Entry, std::vector<Entry>, decltype(cmp)> open(cmp);
    open.push({h(s_), 0});
    int expansions = 0;
    const bool lazy = !lim_.exhaustive_moves;
    while (!open.empty() && expansions < lim_.max_expansions) {
      auto [f, idx] = open.top();
      open.pop();
      if (f >= ub_ * (1 - 1e-9)) break;  // nothing left that beats the incumbent
      Node node = nodes_[idx];
      if (node.g > seen_[key(node.type)]) continue;  // reached more cheaply since
      // Large meshes check a step when its output is taken off the frontier, not when found:
      // most candidates are never expanded, and the check routes every block of the dims.
      if (lazy && node.parent >= 0 && !step_is_valid(m_, node.step)) {
        seen_.erase(key(node.type));
        ++expansions;  // the check is the dear part: it counts against the budget
        continue;
      }
      if (node.depth >= lim_.max_depth) continue;
      ++expansions;
      for (Move& mv : moves(node.type)) {
        if (mv.out.max_local_bytes(m_) > bound_) continue;
        Step st{mv.op, node.type, std::move(mv.out), std::move(mv.axes), std::move(mv.dims), mv.kind};
        double g = node.g + estimate_step_s(m_, st, opts_);
        bool goal = st.out == t_;
        if (g >= ub_ * (1 - 1e-9)) continue;
        std::string k = key(st.out);
        auto it = seen_.find(k);
        if (it != seen_.end() && it->second <= g) continue;
        double fn = g + (goal ? 0.0 : h(st.out));  // the dearer bound only for new states
        if (fn >= ub_ * (1 - 1e-9)) continue;
        if ((goal || !lazy) && !step_is_valid(m_, st)) continue;
        if (goal && lim_.workspace_rule && !workspace_fits(idx, st)) {
          passed_over_ = true;
          continue;
        }
        seen_[k] = g;
        int depth = node.depth + 1;
        nodes_.push_back({st.out, idx, std::move(st), g, depth});
        int ni = static_cast<int>(nodes_.size()) - 1;
        if (goal) {
          ub_ = g;
          best_ = ni;
        } else {
          open.push({fn, ni});
        }
      }
    }
    if (best_ < 0) return std::nullopt;
    std::vector<Step> steps;
    for (int i = best_; nodes_[i].parent >= 0; i = nodes_[i].parent) steps.push_back(nodes_[i].step);
    std::reverse(steps.begin(), steps.end());
    return steps;
  }

  // The second pass (see run): the cheapest plan below `ub` that keeps the workspace bound, or
  // nothing (also when the graph does not fit the expansion budget: then the first pass's
  // plan stands, and the search is not exact for the workspace).
  std::optional<std::vector<Step>> paths_below(double ub) {
    struct Edge {
      int to;
      double cost;
      Step step;
      signed char valid;  // -1: not checked yet (large meshes check when first used)
    };
    struct State {
      Type type;
      double g;
      int depth;
      std::vector<Edge> out;
      double to_go = std::numeric_limits<double>::infinity();  // exact, without the workspace
      std::vector<std::int64_t> bytes = {};  // local bytes per device
      bool in_output = false;                // fits the output buffer on every device
    };
    // Two intermediates back to back that both pass the bound (a pruning rule, exact): an
    // intermediate that does not fit the output buffer on every device lives in scratch
    // (buffer_plan; one that precedes the last step is never in the output slot unless that
    // step runs in place, and then it has the output's blocks), and a step that does not run in
    // place reads and writes different slots. So a plan in which such a step joins two
    // intermediates that do not fit the output holds both at once on every device, and where
    // that passes the bound on some device no completion keeps the workspace.
    const std::vector<std::int64_t> dst_bytes = local_bytes_per_device(t_, m_);
    auto sized = [&](State& x) {
      if (!x.bytes.empty()) return;
      x.bytes = local_bytes_per_device(x.type, m_);
      x.in_output = true;
      for (std::size_t d = 0; d < x.bytes.size(); ++d) x.in_output = x.in_output && x.bytes[d] <= dst_bytes[d];
    };
    auto back_to_back_over = [&](State& a, State& b, const Step& step) {
      sized(a), sized(b);
      if (a.in_output || b.in_output || runs_in_place(m_, step)) return false;
      for (std::size_t d = 0; d < a.bytes.size(); ++d)
        if (a.bytes[d] + b.bytes[d] > bound_) return true;
      return false;
    };
    const bool lazy = !lim_.exhaustive_moves;
    const double cut = ub * (1 - 1e-9);
    std::vector<State> st;
    std::unordered_map<std::string, int> id;
    auto state_of = [&](const Type& t, double g, int depth) {
      auto [it, fresh] = id.try_emplace(key(t), static_cast<int>(st.size()));
      if (fresh) st.push_back({t, g, depth, {}});
      return it->second;
    };
    // 1. Every type with dist + h below ub, and every step between them (A* from the source
    // without stopping at the target; a type whose cheapest prefix plus estimate reaches ub
    // lies on no cheaper plan). The estimate need not be consistent, so a type whose
    // distance drops after it was expanded is expanded again (its steps are re-recorded).
    using Entry = std::pair<double, int>;
    auto cmp = [](const Entry& x, const Entry& y) { return x.first != y.first ? x.first > y.first : x.second > y.second; };
    std::priority_queue<Entry, std::vector<Entry>, decltype(cmp)> open(cmp);
    int target = -1;
    open.push({h(s_), state_of(s_, 0.0, 0)});
    std::vector<double> expanded_at;  // the distance a state was expanded at (inf: never)
    int expansions = 0;
    while (!open.empty()) {
      auto [f, i] = open.top();
      open.pop();
      if (f >= cut) break;
      expanded_at.resize(st.size(), std::numeric_limits<double>::infinity());
      if (expanded_at[i] <= st[i].g) continue;  // nothing new since
      if (expansions >= lim_.max_expansions) return std::nullopt;  // the graph is incomplete
      expanded_at[i] = st[i].g;
      st[i].out.clear();
      if (st[i].depth >= lim_.max_depth) continue;
      ++expansions;
      const Type from = st[i].type;
      for (Move& mv : moves(from)) {
        if (mv.out.max_local_bytes(m_) > bound_) continue;
        Step step{mv.op, from, std::move(mv.out), std::move(mv.axes), std::move(mv.dims), mv.kind};
        const double c = estimate_step_s(m_, step, opts_);
        const double g = st[i].g + c;
        const bool is_goal = step.out == t_;
        const double fn = g + (is_goal ? 0.0 : h(step.out));
        if (fn >= cut) continue;
        if (!lazy && !step_is_valid(m_, step)) continue;
        const int j = state_of(step.out, std::numeric_limits<double>::infinity(), 0);
        // From the source (the caller's input, no workspace) any step; from an intermediate
        // none that makes the pair above (into the target: the target is the output).
        if (i != 0 && !is_goal && back_to_back_over(st[i], st[j], step)) continue;
        if (is_goal) target = j;
        if (g < st[j].g) {
          st[j].g = g, st[j].depth = st[i].depth + 1;
          if (!is_goal) open.push({fn, j});
        }
        st[i].out.push_back({j, c, std::move(step), static_cast<signed char>(lazy ? -1 : 1)});
      }
    }
    if (target < 0) return std::nullopt;
    // 2. The exact cost from every type to the target over those steps (Dijkstra backwards).
    std::vector<std::vector<std::pair<int, double>>> in(st.size());
    for (int i = 0; i < static_cast<int>(st.size()); ++i)
      for (const Edge& e : st[i].out) in[e.to].push_back({i, e.cost});
    st[target].to_go = 0;
    open.push({0.0, target});
    while (!open.empty()) {
      auto [d, j] = open.top();
      open.pop();
      if (d > st[j].to_go) continue;
      for (auto [i, c] : in[j])
        if (d + c < st[i].to_go) st[i].to_go = d + c, open.push({d + c, i});
    }
    // 3. Paths in the order of the cheapest plan through them (that order is exact: the
    // estimate is the exact cost to go), each plan that reaches the target weighed with its
    // workspace. A node is a path: its last state, its parent and the step from it.
    struct PathNode {
      int state, parent;
      const Edge* edge;
      double g;
      int depth;
    };
    std::vector<PathNode> paths{{id.at(key(s_)), -1, nullptr, 0.0, 0}};
    open.push({st[paths[0].state].to_go, 0});
    double best_g = ub;
    int best = -1;
    int taken = 0;
    auto plan_of = [&](int n) {
      std::vector<Step> steps;
      for (; paths[n].parent >= 0; n = paths[n].parent) steps.push_back(paths[n].edge->step);
      std::reverse(steps.begin(), steps.end());
      return steps;
    };
    while (!open.empty()) {
      auto [f, n] = open.top();
      open.pop();
      if (f >= best_g * (1 - 1e-9)) break;
      if (++taken > kMaxPaths) break;  // not exact beyond: the best found so far stands
      const PathNode node = paths[n];
      if (node.depth >= lim_.max_depth) continue;
      for (Edge& e : st[node.state].out) {
        const double g = node.g + e.cost;
        const double fn = g + st[e.to].to_go;
        if (!(fn < best_g * (1 - 1e-9))) continue;  // also: no way on to the target
        if (node.parent >= 0 && node.state == 0 && e.to != target && back_to_back_over(st[0], st[e.to], e.step))
          continue;  // the source again, now an intermediate
        if (e.valid < 0) e.valid = step_is_valid(m_, e.step) ? 1 : 0;
        if (!e.valid) continue;
        paths.push_back({e.to, n, &e, g, node.depth + 1});
        const int ni = static_cast<int>(paths.size()) - 1;
        if (e.to != target) {
          open.push({fn, ni});
          continue;
        }
        if (!plan_fits(plan_of(ni))) continue;
        best_g = g;
        best = ni;
      }
    }
    if (best < 0) return std::nullopt;
    return plan_of(best);
  }

  // Whether the plan that ends with `last` after node `parent` keeps the workspace bound.
  bool workspace_fits(int parent, const Step& last) const {
    std::vector<Step> steps;
    for (int i = parent; nodes_[i].parent >= 0; i = nodes_[i].parent) steps.push_back(nodes_[i].step);
    std::reverse(steps.begin(), steps.end());
    steps.push_back(last);
    return plan_fits(std::move(steps));
  }
  bool plan_fits(std::vector<Step> steps) const {
    Plan p;
    p.mesh = m_;
    p.src = s_;
    p.dst = t_;
    p.steps = std::move(steps);
    const std::vector<std::int64_t> ws = workspace_per_device(p);
    return ws.empty() || *std::max_element(ws.begin(), ws.end()) <= bound_;
  }

  struct Node {
    Type type;
    int parent;
    Step step;  // from the parent
    double g;
    int depth;
  };

  static std::string key(const Type& t) {
    std::string k;
    for (const Dim& d : t.dims) {
      for (const auto& a : d.axes) k += a, k += ',';
      k += ';';
    }
    k += static_cast<char>('0' + static_cast<int>(t.op));
    for (const auto& a : t.reduce_axes) k += a, k += ',';
    return k;
  }

  bool divisible(const detail::IndexedType& x) const {
    for (const auto& d : x.dims)
      if (d.n % d.k != 0) return false;
    return true;
  }

  bool pending_in_target(const std::string& a) const { return contains(t_pending_, a); }

  // Whether only local steps (slices, make_partial) separate c from the target.
  bool local_to_target(const Type& c) const {
    for (const auto& r : c.reduce_axes)
      if (!pending_in_target(r)) return false;
    for (int d = 0; d < c.rank(); ++d) {
      const Axes& ca = c.dims[d].axes;
      const Axes& ta = t_.dims[d].axes;
      if (ca.size() > ta.size() || !std::equal(ca.begin(), ca.end(), ta.begin())) return false;
    }
    return true;
  }

  double h(const Type& c) const {
    if (local_to_target(c)) return 0.0;
    double est = 2 * min_lat_;
    if (!c.reduce_axes.empty() || !divisible_t_) return est;
    detail::IndexedType ic(c, m_);
    if (!divisible(ic)) return est;
    std::int64_t worst = 0;
    for (const auto& co : sample_) {
      std::int64_t want = 1, have = 1;
      for (int d = 0; d < c.rank(); ++d) {
        Interval o = it_.interval(d, co, m_), i = ic.interval(d, co, m_);
        want *= o.extent();
        have *= Interval{std::max(o.lo, i.lo), std::min(o.hi, i.hi)}.extent();
      }
      worst = std::max(worst, want - have);
    }
    return est + static_cast<double>(worst) * static_cast<double>(size_of(c.dtype)) / (max_bw_ * 1e9);
  }

  Axes mesh_order(const Axes& v) const {
    Axes r;
    for (const Axis& a : m_.axes())
      if (contains(v, a.name)) r.push_back(a.name);
    return r;
  }

  // Axes whose dim or position differs between a and b (the group a permute talks over).
  Axes changed_axes(const Type& a, const Type& b) const {
    Axes r;
    for (int d = 0; d < a.rank(); ++d)
      if (a.dims[d].axes != b.dims[d].axes) {
        for (const auto& x : a.dims[d].axes) r.push_back(x);
        for (const auto& x : b.dims[d].axes) r.push_back(x);
      }
    return mesh_order(r);
  }

  bool same_profile(const Type& a, const Type& b) const {
    for (int d = 0; d < a.rank(); ++d)
      if (a.num_blocks(m_, d) != b.num_blocks(m_, d)) return false;
    return true;
  }

  // A non-reducing data movement from c to out: a permute if every dim keeps its number of
  // blocks (axes reordered, swapped between dims or for a free axis of equal size), else an
  // all-to-all, provided every dim only loses minor axes or only gains them (a dim that did
  // both would be a general exchange, not an all-to-all). The group is the axes that change
  // place; a permute whose digits shift under it talks over the whole dims that change.
  void add_moving(std::vector<Move>& mv, const Type& c, Type out) const {
    if (same_dims(c, out)) return;
    std::vector<int> dims;
    Axes moved;
    bool mixed = false;
    for (int d = 0; d < c.rank(); ++d) {
      const Axes& a = c.dims[d].axes;
      const Axes& b = out.dims[d].axes;
      if (a == b) continue;
      dims.push_back(d);
      std::size_t p = 0;
      while (p < a.size() && p < b.size() && a[p] == b[p]) ++p;
      mixed = mixed || (p < a.size() && p < b.size());
      for (std::size_t k = p; k < a.size(); ++k)
        if (!contains(moved, a[k])) moved.push_back(a[k]);
      for (std::size_t k = p; k < b.size(); ++k)
        if (!contains(moved, b[k])) moved.push_back(b[k]);
    }
    if (!same_profile(c, out)) {
      if (mixed) return;
      mv.push_back({Op::all_to_all, std::move(out), mesh_order(moved), std::move(dims)});
      return;
    }
    Axes whole = changed_axes(c, out);
    if (whole.size() != moved.size()) mv.push_back({Op::permute, out, mesh_order(moved), dims});
    mv.push_back({Op::permute, std::move(out), std::move(whole), std::move(dims)});
  }

  std::vector<Move> moves(const Type& c) const {
    std::vector<Move> mv;
    const int r = c.rank();
    Axes free_axes, reducible, in_dims;
    for (const Axis& a : m_.axes()) {
      if (a.size == 1) continue;
      if (c.is_partial_over(a.name)) {
        if (!pending_in_target(a.name)) reducible.push_back(a.name);
      } else if (c.dim_of(a.name) < 0) {
        free_axes.push_back(a.name);
      } else {
        in_dims.push_back(a.name);
      }
    }
    const bool ex = lim_.exhaustive_moves;

    // make_partial: target's pending axes that c replicates become pending (local), the
    // sooner the cheaper (a copy of the current block). Not while c has pending axes that
    // the target does not keep: those are reduced first.
    if (reducible.empty()) {
      Axes add;
      for (const auto& a : t_.reduce_axes)
        if (!c.is_partial_over(a) && contains(free_axes, a)) add.push_back(a);
      auto partial_with = [&](const Axes& S) {
        Type out = c;
        out.op = t_.op;
        out.reduce_axes.clear();
        for (const auto& a : t_.reduce_axes)  // the target's order
          if (c.is_partial_over(a) || contains(S, a)) out.reduce_axes.push_back(a);
        mv.push_back({Op::local, std::move(out), S, {}, LocalKind::make_partial});
      };
      if (ex) for_each_subset(add, partial_with);
      else if (!add.empty()) partial_with(add);
    }

    // Reductions first: data cannot move across pending axes, so they come early.
    auto reduce_out = [&](const Axes& S) {
      Type out = c;
      for (const auto& a : S) erase(out.reduce_axes, a);
      if (out.reduce_axes.empty()) out.op = ReduceOp::none;
      return out;
    };
    if (!reducible.empty()) {
      auto rs_with = [&](const Axes& S, const std::vector<Axes>& app) {
        Type out = reduce_out(S);
        std::vector<int> dims;
        Axes order;
        for (int d = 0; d < r; ++d) {
          for (const auto& a : app[d]) out.dims[d].axes.push_back(a), order.push_back(a);
          if (!app[d].empty()) dims.push_back(d);
        }
        if (!dims.empty()) mv.push_back({Op::reduce_scatter, std::move(out), order, dims});
      };
      if (ex) {
        for_each_subset(reducible, [&](const Axes& S) {
          mv.push_back({Op::all_reduce, reduce_out(S), S, {}});
          if (r > 0) for_each_placement(S, r, [&](const std::vector<Axes>& app) { rs_with(S, app); });
        });
      } else {
        mv.push_back({Op::all_reduce, reduce_out(reducible), reducible, {}});
        std::vector<Axes> all_app(r);
        Axes all_s;
        for (int d = 0; d < r; ++d)
          for (const auto& a : t_.dims[d].axes)
            if (contains(reducible, a)) all_app[d].push_back(a), all_s.push_back(a);
        if (!all_s.empty()) rs_with(all_s, all_app);
        for (const auto& a : reducible) {
          if (reducible.size() > 1) mv.push_back({Op::all_reduce, reduce_out({a}), {a}, {}});
          int d = t_.dim_of(a);
          if (d < 0 || all_s.size() == 1) continue;
          std::vector<Axes> app(r);
          app[d].push_back(a);
          rs_with({a}, app);
        }
      }
    }
    if (!c.reduce_axes.empty() && !reducible.empty() && !ex) return mv;  // reduce before moving

    // Slices: free axes appended at the minor end of dims (local, shrinks).
    auto slice_with = [&](const std::vector<Axes>& app) {
      Type out = c;
      std::vector<int> dims;
      Axes order;
      for (int d = 0; d < r; ++d) {
        for (const auto& a : app[d]) out.dims[d].axes.push_back(a), order.push_back(a);
        if (!app[d].empty()) dims.push_back(d);
      }
      if (!dims.empty()) mv.push_back({Op::slice, std::move(out), order, dims});
    };
    if (r > 0) {
      if (ex) {
        for_each_subset(free_axes, [&](const Axes& S) { for_each_placement(S, r, slice_with); });
      } else {
        std::vector<Axes> all_app(r);
        int n = 0;
        for (int d = 0; d < r; ++d)
          for (const auto& a : t_.dims[d].axes)
            if (contains(free_axes, a)) all_app[d].push_back(a), ++n;
        if (n > 0) slice_with(all_app);
        for (int d = 0; d < r && n > 1; ++d)
          for (const auto& a : all_app[d]) {
            std::vector<Axes> app(r);
            app[d].push_back(a);
            slice_with(app);
          }
      }
    }

    // All-gathers: a minor suffix of any dims.
    {
      std::int64_t combos = 1;
      for (int d = 0; d < r; ++d) combos *= static_cast<std::int64_t>(c.dims[d].axes.size()) + 1;
      auto gather_with = [&](const std::vector<int>& k) {
        Type out = c;
        Axes axes;
        std::vector<int> dims;
        for (int d = 0; d < r; ++d) {
          if (k[d] == 0) continue;
          auto& ax = out.dims[d].axes;
          axes.insert(axes.end(), ax.end() - k[d], ax.end());
          ax.resize(ax.size() - static_cast<std::size_t>(k[d]));
          dims.push_back(d);
        }
        if (!dims.empty()) mv.push_back({Op::all_gather, std::move(out), axes, dims});
      };
      if (ex || combos <= 16) {
        for_each_suffix_choice(c, gather_with);
      } else {
        // The suffixes of axes the target does not use in that dim, and single minor axes.
        std::vector<int> k(r, 0);
        for (int d = 0; d < r; ++d) {
          const Axes& ax = c.dims[d].axes;
          while (k[d] < static_cast<int>(ax.size()) && t_.dim_of(ax[ax.size() - 1 - k[d]]) < 0) ++k[d];
        }
        gather_with(k);
        for (int d = 0; d < r; ++d)
          if (!c.dims[d].axes.empty()) {
            std::vector<int> one(r, 0);
            one[d] = 1;
            gather_with(one);
          }
      }
    }

    // All-to-alls: minor suffixes of some dims, re-appended at the minor ends of dims.
    if (ex) {
      for_each_suffix_choice(c, [&](const std::vector<int>& len) {
        Type base = c;
        Axes popped;
        for (int e = 0; e < r; ++e) {
          auto& ax = base.dims[e].axes;
          popped.insert(popped.end(), ax.end() - len[e], ax.end());
          ax.resize(ax.size() - static_cast<std::size_t>(len[e]));
        }
        if (popped.empty()) return;
        for_each_placement(popped, r, [&](const std::vector<Axes>& app) {
          Type out = base;
          for (int e = 0; e < r; ++e)
            out.dims[e].axes.insert(out.dims[e].axes.end(), app[e].begin(), app[e].end());
          add_moving(mv, c, std::move(out));
        });
      });
    } else {
      // docs/design.md 3's form: a minor suffix of dim i to the minor end of dim j ...
      for (int i = 0; i < r; ++i) {
        const Axes& ax = c.dims[i].axes;
        for (std::size_t k = 1; k <= ax.size(); ++k)
          for (int j = 0; j < r; ++j) {
            if (j == i) continue;
            Type out = c;
            out.dims[i].axes.resize(ax.size() - k);
            out.dims[j].axes.insert(out.dims[j].axes.end(), ax.end() - static_cast<std::ptrdiff_t>(k), ax.end());
            add_moving(mv, c, std::move(out));
          }
      }
      // ... and every misplaced minor suffix to its target dim at once, over the product group.
      Type out = c;
      std::vector<Axes> app(r);
      for (int d = 0; d < r; ++d) {
        auto& ax = out.dims[d].axes;
        while (!ax.empty() && t_.dim_of(ax.back()) >= 0 && t_.dim_of(ax.back()) != d) {
          app[t_.dim_of(ax.back())].insert(app[t_.dim_of(ax.back())].begin(), ax.back());
          ax.pop_back();
        }
      }
      for (int d = 0; d < r; ++d) {
        // Keep the target's relative order among what lands on dim d.
        std::stable_sort(app[d].begin(), app[d].end(), [&](const std::string& a, const std::string& b) {
          const Axes& ta = t_.dims[d].axes;
          return std::find(ta.begin(), ta.end(), a) < std::find(ta.begin(), ta.end(), b);
        });
        out.dims[d].axes.insert(out.dims[d].axes.end(), app[d].begin(), app[d].end());
      }
      add_moving(mv, c, std::move(out));
    }

    // Permutes: same number of blocks per dim; axes reordered, moved between dims, or swapped
    // for a free axis of equal size.
    if (ex) {
      Axes pool = in_dims;
      pool.insert(pool.end(), free_axes.begin(), free_axes.end());
      std::vector<std::int64_t> want(r);
      for (int d = 0; d < r; ++d) want[d] = c.num_blocks(m_, d);
      for_each_subset(pool, [&](const Axes& S) {
        for_each_placement(S, r, [&](const std::vector<Axes>& app) {
          for (int d = 0; d < r; ++d) {
            std::int64_t k = 1;
            for (const auto& a : app[d]) k *= m_.axis_size(a);
            if (k != want[d]) return;
          }
          Type out = c;
          for (int d = 0; d < r; ++d) out.dims[d].axes = app[d];
          add_moving(mv, c, std::move(out));
        });
      });
    } else {
      // Straight to the target's dims when the block counts already match.
      Type direct = c;
      for (int d = 0; d < r; ++d) direct.dims[d].axes = t_.dims[d].axes;
      bool ok = same_profile(c, direct);
      for (const auto& a : c.reduce_axes) ok = ok && direct.dim_of(a) < 0;
      if (ok) add_moving(mv, c, std::move(direct));
      // Reorder within dims: target axes first (in target order), misplaced ones minor.
      Type re = c;
      for (int d = 0; d < r; ++d) {
        Axes keep, out;
        for (const auto& a : t_.dims[d].axes)
          if (contains(c.dims[d].axes, a)) keep.push_back(a);
        for (const auto& a : c.dims[d].axes)
          if (!contains(keep, a)) out.push_back(a);
        keep.insert(keep.end(), out.begin(), out.end());
        re.dims[d].axes = keep;
      }
      add_moving(mv, c, std::move(re));
      // Swaps of two equal-size axes, at least one of them in a dim.
      Axes pool = in_dims;
      pool.insert(pool.end(), free_axes.begin(), free_axes.end());
      for (std::size_t i = 0; i < in_dims.size(); ++i)
        for (std::size_t j = i + 1; j < pool.size(); ++j) {
          if (m_.axis_size(pool[i]) != m_.axis_size(pool[j])) continue;
          Type out = c;
          for (Dim& dd : out.dims)
            for (auto& a : dd.axes) {
              if (a == pool[i]) a = pool[j];
              else if (a == pool[j]) a = pool[i];
            }
          add_moving(mv, c, std::move(out));
        }
    }
    return mv;
  }

  const Mesh& m_;
  const Type& s_;
  const Type& t_;
  std::int64_t bound_;
  const SynthOptions& opts_;
  SearchLimits lim_;
  detail::IndexedType it_;
  Axes t_pending_;
  std::vector<std::vector<int>> sample_;
  bool divisible_t_ = false;
  double min_lat_ = 0, max_bw_ = 0;
  double ub_ = 0;
  int best_ = -1;
  bool passed_over_ = false;  // a goal was passed over for its workspace
  // Paths the second pass takes off its frontier at most (each costs a few stored steps).
  static constexpr int kMaxPaths = 20000;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, double> seen_;
};

}  // namespace

SearchLimits default_limits(const Mesh& mesh, const Type& src) {
  SearchLimits l;
  int axes = 0;
  for (const Axis& a : mesh.axes()) axes += a.size > 1;
  l.exhaustive_moves = axes <= 3 && src.rank() <= 4;
  l.max_depth = std::max(6, axes + 3);
  // Each expansion routes O(moves) candidate steps; fewer on very large meshes.
  l.max_expansions = mesh.num_devices() > 4096 ? 8 : mesh.num_devices() > 256 ? 12 : 2000;
  return l;
}

std::optional<std::vector<Step>> search_plan(const Mesh& mesh, const Type& s, const Type& t,
                                             std::int64_t bound, const SynthOptions& opts,
                                             double incumbent_cost, const SearchLimits& limits, double fallback_cost) {
  if (s == t) return std::nullopt;
  return Search(mesh, s, t, bound, opts, limits).run(incumbent_cost, fallback_cost);
}

}  // namespace reshard::synth
