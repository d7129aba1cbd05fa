// The exhaustive reference: on small meshes (up to 3 axes of size 2-3, rank up to 3) every
// collective plan of up to 4 steps that keeps the memory bound is enumerated, step kinds as
// docs/design.md 3's table defines them. The synthesizer's plan must cost no more by the cost
// model than the cheapest of them that keeps the workspace bound too (no tolerance), and where
// bandwidth dominates (even blocks, shards of 1 MiB or more) receive no more bytes than the
// fewest any of them receives: under a bandwidth-only model and with free local copies always,
// under the default model without reductions; with one, under the default model, no plan that
// receives fewer bytes may copy no more locally (see below). 2,000 compared triples.
//
// The reference does not share the search's move generator: it enumerates every type of the
// mesh (each axis free, pending, or at some position of some dim) and classifies every ordered
// pair of types by the step, if any, that turns one into the other; then a layered shortest
// path over those steps gives the optimum of up to 4 steps by cost and, separately, by bytes,
// and a depth-first walk weighs the plans that beat the synthesizer's with their workspace.
// RESHARD_SEED and RESHARD_EXHAUSTIVE_CASES override the seed and the count.
#include <algorithm>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>

#include <catch2/catch.hpp>

#include "random_types.hpp"
#include "reshard/route.hpp"
#include "reshard/simulate.hpp"
#include "reshard/synth.hpp"
#include "reshard/workspace.hpp"

using namespace reshard;

namespace {

std::uint64_t env_or(const char* name, std::uint64_t dflt) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : dflt;
}

using Axes = std::vector<std::string>;

// One candidate state: a type, and what the classifier compares (axis indices, masks).
struct State {
  Type type;
  std::vector<std::vector<int>> dims;  // axis indices per dim, major first
  std::uint32_t pending = 0, used = 0;
  std::vector<std::int64_t> blocks;  // per dim
  std::int64_t max_bytes = 0;
};

// Bytes a step copies locally, as the cost model counts them (estimate_step_s: its out-block,
// except for a relabel).
std::int64_t copy_bytes(const Mesh& m, const Step& s) {
  return s.op == Op::local && s.local_kind == LocalKind::relabel ? 0 : s.out.max_local_bytes(m);
}

bool is_prefix(const std::vector<int>& a, const std::vector<int>& b) {
  return a.size() <= b.size() && std::equal(a.begin(), a.end(), b.begin());
}

class Reference {
 public:
  Reference(const Mesh& m, const Type& s, const Type& t, const SynthOptions& o) : m_(m), t_(t), opts_(o) {
    bound_ = std::max(s.max_local_bytes(m), t.max_local_bytes(m));
    std::uint32_t pend_src = mask(s.reduce_axes), pend_dst = mask(t.reduce_axes);
    dst_pending_ = pend_dst;
    op_ = s.op != ReduceOp::none ? s.op : t.op;
    // Every pending set between what the source and the target have pending.
    std::uint32_t any = pend_src | pend_dst;
    for (std::uint32_t p = any;; p = (p - 1) & any) {
      enumerate(s, p);
      if (p == 0) break;
    }
    src_ = find(s);
    dst_ = find(t);
  }

  // Cheapest cost and fewest bytes (sum of the steps' bytes) over plans of 1..max_steps steps.
  std::pair<double, std::int64_t> optimum(int max_steps) {
    const double inf = std::numeric_limits<double>::infinity();
    const std::int64_t big = std::numeric_limits<std::int64_t>::max();
    std::vector<double> cost(states_.size(), inf);
    std::vector<std::int64_t> bytes(states_.size(), big);
    cost[src_] = 0;
    bytes[src_] = 0;
    double best_cost = inf;
    std::int64_t best_bytes = big;
    for (int k = 0; k < max_steps; ++k) {
      std::vector<double> nc = cost;
      std::vector<std::int64_t> nb = bytes;
      for (std::size_t a = 0; a < states_.size(); ++a) {
        if (cost[a] == inf && bytes[a] == big) continue;
        for (const Edge& e : edges(a)) {
          if (cost[a] != inf) nc[e.to] = std::min(nc[e.to], cost[a] + e.cost);
          if (bytes[a] != big) nb[e.to] = std::min(nb[e.to], bytes[a] + e.bytes);
        }
      }
      cost = std::move(nc);
      bytes = std::move(nb);
      best_cost = std::min(best_cost, cost[dst_]);
      best_bytes = std::min(best_bytes, bytes[dst_]);
    }
    return {best_cost, best_bytes};
  }

  // A plan of 1..max_steps steps that keeps the workspace bound (workspace.hpp, MPI rules) and
  // is cheaper than `cost` (by_bytes: receives fewer than `bytes`, summed per step, and copies
  // no more than `copies` locally), if any. Depth-first, cut where a prefix already costs as
  // much (costs, bytes and copies add up).
  std::optional<Plan> beats_within_workspace(int max_steps, double cost, std::int64_t bytes, bool by_bytes,
                                             std::int64_t copies = std::numeric_limits<std::int64_t>::max()) {
    std::vector<Step> path;
    std::optional<Plan> found;
    auto dfs = [&](auto& self, std::size_t a, double c, std::int64_t b, std::int64_t cp) -> void {
      if (found) return;
      if (a == dst_ && !path.empty()) {
        Plan p;
        p.mesh = m_;
        p.src = states_[src_].type;
        p.dst = states_[dst_].type;
        p.steps = path;
        const std::vector<std::int64_t> ws = workspace_per_device(p);
        if (*std::max_element(ws.begin(), ws.end()) <= bound_) found = std::move(p);
        return;
      }
      if (static_cast<int>(path.size()) == max_steps) return;
      for (const Edge& e : edges(a)) {
        const double nc = c + e.cost;
        const std::int64_t nb = b + e.bytes, ncp = cp + copy_bytes(m_, e.step);
        if (by_bytes ? nb >= bytes || ncp > copies : nc * (1 + 1e-9) >= cost) continue;
        path.push_back(e.step);
        self(self, e.to, nc, nb, ncp);
        path.pop_back();
      }
    };
    dfs(dfs, src_, 0, 0, 0);
    return found;
  }

  std::size_t num_states() const { return states_.size(); }
  std::size_t num_edges() const {
    std::size_t n = 0;
    for (const auto& e : edges_) n += e.size();
    return n;
  }

 private:
  struct Edge {
    std::size_t to;
    double cost;
    std::int64_t bytes;
    Step step;
  };

  std::uint32_t mask(const Axes& v) const {
    std::uint32_t r = 0;
    for (const auto& a : v) r |= 1u << m_.axis_index(a);
    return r;
  }

  // Every placement of the axes outside `pending` into the dims of `shape_of` (each axis free
  // or at some position of some dim).
  void enumerate(const Type& shape_of, std::uint32_t pending) {
    Type base;
    base.dtype = shape_of.dtype;
    for (const Dim& d : shape_of.dims) base.dims.push_back({d.size, {}});
    for (int a = 0; a < m_.num_axes(); ++a)
      if (pending >> a & 1) base.reduce_axes.push_back(m_.axes()[a].name);
    base.op = pending ? op_ : ReduceOp::none;
    auto rec = [&](auto&& self, int a, Type& cur) -> void {
      if (a == m_.num_axes()) return add_state(cur);
      if (pending >> a & 1) return self(self, a + 1, cur);
      self(self, a + 1, cur);  // free
      for (int d = 0; d < cur.rank(); ++d)
        for (std::size_t pos = 0; pos <= cur.dims[d].axes.size(); ++pos) {
          auto& ax = cur.dims[d].axes;
          ax.insert(ax.begin() + static_cast<std::ptrdiff_t>(pos), m_.axes()[a].name);
          self(self, a + 1, cur);
          ax.erase(ax.begin() + static_cast<std::ptrdiff_t>(pos));
        }
    };
    rec(rec, 0, base);
  }

  void add_state(const Type& t) {
    State s;
    s.type = t;
    for (const Dim& d : t.dims) {
      std::vector<int> ix;
      std::int64_t k = 1;
      for (const auto& a : d.axes) {
        ix.push_back(m_.axis_index(a));
        s.used |= 1u << ix.back();
        k *= m_.axis_size(a);
      }
      s.dims.push_back(ix);
      s.blocks.push_back(k);
    }
    s.pending = mask(t.reduce_axes);
    s.max_bytes = t.max_local_bytes(m_);
    index_[key(s)] = states_.size();
    states_.push_back(std::move(s));
  }

  static std::string key(const State& s) {
    std::string k;
    for (const auto& d : s.dims) {
      for (int a : d) k += static_cast<char>('a' + a);
      k += '|';
    }
    return k + std::to_string(s.pending);
  }

  std::size_t find(const Type& t) const {
    State s;
    for (const Dim& d : t.dims) {
      std::vector<int> ix;
      for (const auto& a : d.axes) ix.push_back(m_.axis_index(a));
      s.dims.push_back(ix);
    }
    s.pending = mask(t.reduce_axes);
    return index_.at(key(s));
  }

  Axes names(std::uint32_t axes_mask) const {
    Axes r;
    for (int a = 0; a < m_.num_axes(); ++a)
      if (axes_mask >> a & 1) r.push_back(m_.axes()[a].name);
    return r;
  }

  // The steps of docs/design.md 3 that turn A into B, with the groups they may use.
  std::vector<Step> classify(const State& A, const State& B) const {
    std::vector<Step> r;
    const int rank = static_cast<int>(A.dims.size());
    auto step = [&](Op op, std::uint32_t group, LocalKind kind = LocalKind::relabel) {
      std::vector<int> dims;
      for (int d = 0; d < rank; ++d)
        if (A.dims[d] != B.dims[d]) dims.push_back(d);
      r.push_back(Step{op, A.type, B.type, names(group), dims, kind});
    };
    bool a_prefix = true, b_prefix = true, nested = true, same = true;
    std::uint32_t added = 0, removed = 0, moved = 0, whole = 0;
    for (int d = 0; d < rank; ++d) {
      const auto& x = A.dims[d];
      const auto& y = B.dims[d];
      same = same && x == y;
      bool ap = is_prefix(x, y), bp = is_prefix(y, x);
      a_prefix = a_prefix && ap;
      b_prefix = b_prefix && bp;
      nested = nested && (ap || bp);
      std::size_t p = 0;
      while (p < x.size() && p < y.size() && x[p] == y[p]) ++p;
      for (std::size_t k = p; k < x.size(); ++k) removed |= 1u << x[k], moved |= 1u << x[k];
      for (std::size_t k = p; k < y.size(); ++k) added |= 1u << y[k], moved |= 1u << y[k];
      if (x != y)
        for (int a : x) whole |= 1u << a;
      if (x != y)
        for (int a : y) whole |= 1u << a;
    }
    if (A.pending == B.pending) {
      if (same) return r;
      if (a_prefix) step(Op::slice, 0);
      else if (b_prefix) step(Op::all_gather, removed);
      else if (A.blocks == B.blocks) {
        step(Op::permute, moved);
        if (whole != moved) step(Op::permute, whole);
      } else if (nested && A.used == B.used) {
        step(Op::all_to_all, moved);
      }
    } else if ((B.pending & ~A.pending) == 0) {
      std::uint32_t S = A.pending & ~B.pending;
      if (same) step(Op::all_reduce, S);
      else if (a_prefix && added == S) step(Op::reduce_scatter, S);
    } else if ((A.pending & ~B.pending) == 0 && same) {
      std::uint32_t S = B.pending & ~A.pending;
      if ((S & ~dst_pending_) == 0 && (A.pending & ~dst_pending_) == 0) step(Op::local, S, LocalKind::make_partial);
    }
    return r;
  }

  const std::vector<Edge>& edges(std::size_t a) {
    if (edges_.size() < states_.size()) edges_.resize(states_.size()), done_.resize(states_.size());
    if (done_[a]) return edges_[a];
    done_[a] = true;
    for (std::size_t b = 0; b < states_.size(); ++b) {
      if (b == a || states_[b].max_bytes > bound_) continue;
      for (const Step& st : classify(states_[a], states_[b])) {
        if (!step_is_valid(m_, st)) continue;
        edges_[a].push_back({b, estimate_step_s(m_, st, opts_), estimate_step_bytes(m_, st), st});
      }
    }
    return edges_[a];
  }

  const Mesh& m_;
  const Type& t_;
  const SynthOptions& opts_;
  std::int64_t bound_ = 0;
  std::uint32_t dst_pending_ = 0;
  ReduceOp op_ = ReduceOp::none;
  std::vector<State> states_;
  std::map<std::string, std::size_t> index_;
  std::vector<std::vector<Edge>> edges_;
  std::vector<char> done_;
  std::size_t src_ = 0, dst_ = 0;
};

struct Triple {
  Mesh mesh;
  Type src, dst;
  bool big = false;  // even blocks of 1 MiB or more: bandwidth dominates
};

Triple draw(test::TypeGen& g) {
  Triple c;
  std::vector<Axis> axes;
  const char* names[] = {"x", "y", "z"};
  int n = g.uniform(1, 3);
  for (int i = 0; i < n; ++i) axes.push_back({names[i], g.uniform(2, 3)});
  c.mesh = Mesh(axes);
  int rank = g.uniform(1, 3);
  c.big = g.uniform(0, 3) == 0;
  std::vector<std::int64_t> shape;
  for (int i = 0; i < rank; ++i) {
    // Big: multiples of 216 = 8 * 27 (every product of axes of size 2-3 divides it) and at
    // least 1 MiB per shard (i8 over 27 devices included); else small, often uneven.
    if (c.big) shape.push_back(216 * (rank == 1 ? 131072 : rank == 2 ? 64 : 8));
    else shape.push_back(g.uniform(0, 1) ? 12 * g.uniform(1, 3) : g.uniform(1, 13));
  }
  DType dts[] = {DType::f32, DType::bf16, DType::i64, DType::i8};
  DType dt = dts[g.uniform(0, 3)];
  ReduceOp ops[] = {ReduceOp::sum, ReduceOp::max};
  ReduceOp op = ops[g.uniform(0, 1)];
  c.src = g.type(c.mesh, dt, shape, op, true);
  c.dst = g.type(c.mesh, dt, shape, op, g.uniform(0, 2) == 0);
  return c;
}

std::int64_t plan_step_bytes(const Plan& p) {
  std::int64_t b = 0;
  for (const Step& s : p.steps) b += estimate_step_bytes(p.mesh, s);
  return b;
}

// The plan receives no more bytes than the fewest any enumerated plan receives (summed per
// step, as the reference adds them up), unless that plan passes the workspace bound and none
// that keeps it receives fewer than the plan.
// only_copying_less: only plans that copy no more locally than `p` count (see the caller).
void check_fewest_bytes(Reference& ref, const Plan& p, std::int64_t fewest, bool only_copying_less = false) {
  const std::int64_t mine = plan_step_bytes(p);
  if (mine <= fewest) {
    CHECK(p.stats.bytes_recv_max <= fewest);
    return;
  }
  std::int64_t copies = std::numeric_limits<std::int64_t>::max();
  if (only_copying_less) {
    copies = 0;
    for (const Step& s : p.steps) copies += copy_bytes(p.mesh, s);
  }
  std::optional<Plan> w = ref.beats_within_workspace(4, 0, mine, true, copies);
  INFO("plan (" << mine << " B by its steps, fewest " << fewest << " B):\n" << fmt::format("{}", p));
  INFO("fewer bytes within the workspace bound:\n" << (w ? fmt::format("{}", *w) : "none"));
  CHECK(!w);
}

}  // namespace

TEST_CASE("no collective plan of up to 4 steps beats the synthesizer", "[exhaustive]") {
  std::uint64_t seed = env_or("RESHARD_SEED", 20261201);
  int cases = static_cast<int>(env_or("RESHARD_EXHAUSTIVE_CASES", 2000));
  test::TypeGen gen(seed);
  int compared = 0, bytes_compared = 0, bytes_compared_default = 0, bytes_compared_reduce = 0, workspace_limited = 0;
  SynthOptions bandwidth_only;
  bandwidth_only.topology.default_link.latency_s = 1e-15;
  bandwidth_only.local_copy_GBps = 1e9;
  SynthOptions copies_free;
  copies_free.local_copy_GBps = 1e9;
  // Draw until `cases` triples have been compared (some have no collective plan of up to 4
  // steps, with uneven blocks, or are no-ops).
  for (int i = 0; compared < cases && i < 4 * cases; ++i) {
    Triple c = draw(gen);
    if (c.src == c.dst) continue;
    INFO("case " << i << " seed " << seed << ": " << c.mesh << " | " << c.src << " | " << c.dst);
    SynthOptions o;
    Plan p = synthesize(c.mesh, c.src, c.dst, o);
    INFO(fmt::format("{}", p));
    Reference ref(c.mesh, c.src, c.dst, o);
    auto [cost, bytes] = ref.optimum(4);
    if (!std::isfinite(cost)) continue;  // no collective plan within 4 steps (uneven blocks)
    ++compared;
    INFO("reference over " << ref.num_states() << " types, " << ref.num_edges() << " steps: cost " << cost
                           << " s, fewest bytes " << bytes);
    // The workspace is part of the memory bound: the synthesizer may lose to the cheapest
    // enumerated plan only where that plan passes it, and then to none that keeps it.
    const std::int64_t bound = std::max(p.stats.src_local_bytes, p.stats.dst_local_bytes);
    CHECK(p.stats.workspace_bytes <= bound);
    CHECK(p.stats.max_intermediate_bytes <= bound);
    if (p.stats.est_time_s > cost * (1 + 1e-9)) {
      ++workspace_limited;
      std::optional<Plan> w = ref.beats_within_workspace(4, p.stats.est_time_s, 0, false);
      INFO("a cheaper plan within the workspace bound:\n" << (w ? fmt::format("{}", *w) : "none"));
      CHECK(!w);
    }
    if (c.big) {
      ++bytes_compared;
      // Where the cost is all bandwidth (latency and local copies next to free), the cheapest
      // plan is the one that receives the fewest bytes.
      Plan q = synthesize(c.mesh, c.src, c.dst, bandwidth_only);
      INFO("bandwidth-only plan:\n" << fmt::format("{}", q));
      check_fewest_bytes(ref, q, bytes);
      // With the default latency but free local copies.
      Plan r = synthesize(c.mesh, c.src, c.dst, copies_free);
      INFO("copies-free plan:\n" << fmt::format("{}", r));
      check_fewest_bytes(ref, r, bytes);
      // With the default model too.
      if (c.src.reduce_axes.empty() && c.dst.reduce_axes.empty()) {
        ++bytes_compared_default;
        check_fewest_bytes(ref, p, bytes);
      } else {
        // With a pending reduction the plan that receives the fewest bytes slices before it
        // reduces (e.g. slice y, reduce_scatter x, all_gather y,x in place of one all_reduce
        // x), and the slice copies the block: by the default model a local byte costs what a
        // received one does (10 GB/s each), so such plans lose by their copies, not by bytes.
        // What the model justifies: no plan that receives fewer bytes copies no more.
        ++bytes_compared_reduce;
        check_fewest_bytes(ref, p, bytes, true);
      }
    }
  }
  // The draw must exercise the comparison, big (bandwidth-bound) cases included.
  CHECK(compared == cases);
  CHECK(bytes_compared > cases / 8);
  CHECK(bytes_compared_default > cases / 16);
  // The workspace rule decides some draws (the cheapest plan needs more than the bound).
  CHECK(workspace_limited > 0);
  CHECK(bytes_compared_reduce > cases / 16);
}
