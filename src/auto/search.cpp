// The beam search over program shardings (search.hpp).
#include "reshard/auto/search.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "reshard/auto/rules.hpp"

namespace reshard::automap {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Types interned as small integers: states compare and hash by id.
class TypeTable {
 public:
  explicit TypeTable(const Mesh& m) : mesh_(m) {}
  int intern(const Type& t) {
    std::string key = t.to_string();
    auto it = ids_.find(key);
    if (it != ids_.end()) return it->second;
    int id = static_cast<int>(types_.size());
    types_.push_back(t);
    bytes_.push_back(t.max_local_bytes(mesh_));
    ids_.emplace(std::move(key), id);
    return id;
  }
  const Type& type(int id) const { return types_[id]; }
  std::int64_t bytes(int id) const { return bytes_[id]; }

 private:
  const Mesh& mesh_;
  std::vector<Type> types_;
  std::vector<std::int64_t> bytes_;
  std::unordered_map<std::string, int> ids_;
};

struct ReshardCost {
  bool ok = false;
  double time_s = 0;
  std::int64_t transient = 0;  // largest local array the plan holds (its result included)
  std::shared_ptr<const Plan> plan;
};

struct Strat {
  std::vector<int> args;
  int out = -1;
  double compute_s = 0;
};

struct Rec {
  int op, tensor, from, to;
};

struct State {
  std::vector<int> type;               // per tensor; -1: not chosen yet
  std::vector<std::int64_t> act;       // per op (and one slot for the outputs): bytes besides params
  std::vector<const Strat*> strat;     // per op
  std::vector<int> out_type;           // per output
  std::vector<Rec> reshards;
  std::int64_t param_bytes = 0;
  std::int64_t undecided_min = 0;  // least bytes the parameters not chosen yet can take
  double compute = 0, comm = 0;
  double time() const { return compute + comm; }
  std::int64_t peak_lb() const { return param_bytes + undecided_min + *std::max_element(act.begin(), act.end()); }
};

class Engine {
 public:
  Engine(const Program& p, const SearchOptions& o) : p_(p), o_(o), tt_(p.mesh) {
    so_.topology = o.topology;
    so_.exact_stats = false;
    last_use_.resize(p.tensors.size());
    first_.resize(p.tensors.size(), 0);
    for (std::size_t t = 0; t < p.tensors.size(); ++t) {
      last_use_[t] = p.last_use(static_cast<int>(t));
      int prod = p.producer(static_cast<int>(t));
      first_[t] = prod < 0 ? 0 : prod;
    }
  }

  Assignment run();

 private:
  const ReshardCost& reshard(int from, int to) {
    auto key = (static_cast<std::uint64_t>(from) << 32) | static_cast<std::uint32_t>(to);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    ReshardCost c;
    try {
      auto plan = std::make_shared<Plan>(synthesize(p_.mesh, tt_.type(from), tt_.type(to), so_));
      c.time_s = estimate_plan_s(*plan, so_);
      c.transient = tt_.bytes(to);
      for (const Step& s : plan->steps) c.transient = std::max(c.transient, s.out.max_local_bytes(p_.mesh));
      c.plan = std::move(plan);
      c.ok = true;
    } catch (const Error&) {
      c.ok = false;  // not a reshard the synthesizer makes: the candidate is dropped
    }
    ++stats_.plans_synthesized;
    return cache_.emplace(key, std::move(c)).first->second;
  }

  const std::vector<Strat>& strats(int k, std::vector<int> cur) {
    // An einsum's strategies depend on its arguments' current types only through a pending sum
    // they may carry in unreduced: one list serves every other combination.
    if (p_.ops[k].kind == OpKind::einsum)
      for (int& id : cur)
        if (id >= 0 && tt_.type(id).op == ReduceOp::none) id = -1;
    auto key = std::make_pair(k, cur);
    auto it = strat_cache_.find(key);
    if (it != strat_cache_.end()) return it->second;
    std::vector<std::optional<Type>> ct;
    for (int id : cur) ct.push_back(id < 0 ? std::nullopt : std::optional<Type>(tt_.type(id)));
    std::vector<Strat> v;
    for (OpStrategy& s : strategies(p_, p_.ops[k], ct)) {
      Strat x;
      for (const Type& a : s.args) x.args.push_back(tt_.intern(a));
      x.out = tt_.intern(s.out);
      x.compute_s = s.flops / o_.flops_per_s;
      v.push_back(std::move(x));
    }
    stats_.strategies += static_cast<std::int64_t>(v.size());
    return strat_cache_.emplace(std::move(key), std::move(v)).first->second;
  }

  const std::vector<int>& storage(int tensor, int req) {
    auto it = storage_cache_.find(req);
    if (it != storage_cache_.end()) return it->second;
    std::vector<int> v;
    if (p_.tensors[tensor].role == Role::param)
      for (const Type& t : storage_types(tt_.type(req), p_.mesh)) v.push_back(tt_.intern(t));
    else
      v.push_back(req);
    return storage_cache_.emplace(req, std::move(v)).first->second;
  }

  std::int64_t min_bytes(int t) const {
    const Tensor& x = p_.tensors[t];
    std::int64_t e = (x.elements() + p_.mesh.num_devices() - 1) / p_.mesh.num_devices();
    return e * static_cast<std::int64_t>(size_of(x.dtype));
  }

  // Gives tensor t (an input or param) its stored type.
  void decide(State& s, int t, int id) {
    s.type[t] = id;
    std::int64_t b = tt_.bytes(id);
    if (p_.tensors[t].role == Role::param) {
      s.param_bytes += b;
      s.undecided_min -= min_bytes(t);
    } else if (last_use_[t] >= 0) {
      for (int i = 0; i <= last_use_[t]; ++i) s.act[i] += b;
    }
  }

  // Adds a reshard of t before op k (k == nops: the outputs); false if it cannot be planned.
  bool add_reshard(State& s, int k, int t, int from, int to) {
    if (from == to) return true;
    const ReshardCost& c = reshard(from, to);
    if (!c.ok) return false;
    s.comm += c.time_s;
    s.act[k] += c.transient;
    s.reshards.push_back(Rec{k == static_cast<int>(p_.ops.size()) ? -1 : k, t, from, to});
    return true;
  }

  std::string signature(const State& s, int after) const {
    // The raw ids of the live tensors' types (a binary key: it is built for every candidate).
    std::string key;
    key.reserve(4 * (s.type.size() + s.out_type.size()));
    auto put = [&](int v) { key.append(reinterpret_cast<const char*>(&v), sizeof v); };
    for (std::size_t t = 0; t < s.type.size(); ++t)
      if (last_use_[t] > after) put(s.type[t]);
    for (int o : s.out_type) put(o);
    return key;
  }

  void expand_op(const State& s, int k, std::vector<State>& out);
  void expand_output(const State& s, int j, std::vector<State>& out);
  std::vector<State> select(std::vector<State> next, int after);
  Assignment finish(const State& s);

  const Program& p_;
  SearchOptions o_;
  SynthOptions so_;
  TypeTable tt_;
  std::vector<int> last_use_, first_;
  std::unordered_map<std::uint64_t, ReshardCost> cache_;
  std::map<std::pair<int, std::vector<int>>, std::vector<Strat>> strat_cache_;
  std::unordered_map<int, std::vector<int>> storage_cache_;
  SearchStats stats_;
};

void Engine::expand_op(const State& s, int k, std::vector<State>& out) {
  const Operation& op = p_.ops[k];
  std::vector<int> cur;
  for (int a : op.args) cur.push_back(s.type[a]);
  ++stats_.states_expanded;
  for (const Strat& st : strats(k, cur)) {
    // Each free argument (an input or param seen for the first time) picks how it is stored.
    std::vector<std::vector<int>> opts(op.args.size());
    for (std::size_t i = 0; i < op.args.size(); ++i) {
      if (cur[i] >= 0) opts[i] = {cur[i]};
      else if (i == 1 && op.args[1] == op.args[0]) opts[i] = {-2};  // the same tensor: as chosen for arg 0
      else opts[i] = storage(op.args[i], st.args[i]);
    }
    std::vector<std::size_t> pick(opts.size(), 0);
    while (true) {
      ++stats_.candidates;
      State n = s;
      bool ok = true;
      for (std::size_t i = 0; i < op.args.size() && ok; ++i) {
        int t = op.args[i], from = opts[i][pick[i]];
        if (from == -2) from = n.type[t];
        else if (cur[i] < 0) decide(n, t, from);
        ok = add_reshard(n, k, t, from, st.args[i]);
      }
      if (ok) {
        n.compute += st.compute_s;
        n.strat[k] = &st;
        int t = op.out, type = st.out;
        const Tensor& res = p_.tensors[t];
        if (res.fixed) {
          int fixed = tt_.intern(*res.fixed);
          n.act[k] += tt_.bytes(type);
          ok = add_reshard(n, k, t, type, fixed);
          type = fixed;
        }
        n.type[t] = type;
        for (int i = k; i <= last_use_[t]; ++i) n.act[i] += tt_.bytes(type);
        if (last_use_[t] < k) n.act[k] += tt_.bytes(type);  // unused: held while it is made
        if (ok) out.push_back(std::move(n));
      }
      std::size_t i = 0;
      while (i < pick.size() && ++pick[i] == opts[i].size()) pick[i++] = 0;
      if (i == pick.size()) break;
    }
  }
}

void Engine::expand_output(const State& s, int j, std::vector<State>& out) {
  const int t = p_.outputs[j];
  const int nops = static_cast<int>(p_.ops.size());
  ++stats_.states_expanded;
  std::vector<Type> options;
  if (s.type[t] < 0) options = free_types(p_.tensors[t], p_.mesh);  // an output no op reads
  else options = resolutions(tt_.type(s.type[t]), p_.mesh);
  for (const Type& o : options) {
    ++stats_.candidates;
    State n = s;
    int to = tt_.intern(o);
    if (n.type[t] < 0) {
      decide(n, t, to);
      if (p_.tensors[t].role == Role::param) n.act[nops] += 0;
    } else if (!add_reshard(n, nops, t, n.type[t], to)) {
      continue;
    }
    n.out_type[j] = to;
    out.push_back(std::move(n));
  }
}

std::vector<State> Engine::select(std::vector<State> next, int after) {
  const std::int64_t cap = o_.memory_limit_bytes;
  // Merge partial assignments with the same frontier: keep the fastest and the leanest.
  std::unordered_map<std::string, std::pair<int, int>> best;  // signature -> (fastest, leanest)
  for (int i = 0; i < static_cast<int>(next.size()); ++i) {
    auto [it, fresh] = best.try_emplace(signature(next[i], after), i, i);
    if (fresh) continue;
    ++stats_.merged;
    auto& [f, l] = it->second;
    if (next[i].time() < next[f].time()) f = i;
    if (next[i].peak_lb() < next[l].peak_lb()) l = i;
  }
  std::vector<int> keep;
  for (auto& [k, fl] : best) {
    keep.push_back(fl.first);
    if (fl.second != fl.first) keep.push_back(fl.second);
  }
  std::sort(keep.begin(), keep.end());  // deterministic order before the stable sorts below
  bool any_fits = false;
  for (int i : keep) any_fits = any_fits || cap <= 0 || next[i].peak_lb() <= cap;
  if (any_fits && cap > 0)
    keep.erase(std::remove_if(keep.begin(), keep.end(), [&](int i) { return next[i].peak_lb() > cap; }), keep.end());
  const std::size_t w = static_cast<std::size_t>(std::max(1, o_.beam_width));
  std::vector<int> by_time = keep, by_mem = keep;
  auto faster = [&](int a, int b) {
    if (next[a].time() != next[b].time()) return next[a].time() < next[b].time();
    return next[a].peak_lb() < next[b].peak_lb();
  };
  auto leaner = [&](int a, int b) {
    if (next[a].peak_lb() != next[b].peak_lb()) return next[a].peak_lb() < next[b].peak_lb();
    return next[a].time() < next[b].time();
  };
  std::stable_sort(by_time.begin(), by_time.end(), faster);
  std::stable_sort(by_mem.begin(), by_mem.end(), leaner);
  std::vector<int> chosen(by_time.begin(), by_time.begin() + std::min(w, by_time.size()));
  std::unordered_set<int> in(chosen.begin(), chosen.end());
  for (std::size_t i = 0, added = 0; i < by_mem.size() && added < std::max<std::size_t>(1, w / 2); ++i)
    if (in.insert(by_mem[i]).second) chosen.push_back(by_mem[i]), ++added;
  std::vector<State> out;
  out.reserve(chosen.size());
  for (int i : chosen) out.push_back(std::move(next[i]));
  return out;
}

Assignment Engine::finish(const State& s) {
  Assignment a;
  for (std::size_t t = 0; t < s.type.size(); ++t)
    a.types.push_back(s.type[t] >= 0 ? tt_.type(s.type[t]) : p_.tensors[t].replicated());
  for (std::size_t k = 0; k < p_.ops.size(); ++k) {
    OpChoice c;
    for (int id : s.strat[k]->args) c.args.push_back(tt_.type(id));
    c.out = tt_.type(s.strat[k]->out);
    c.compute_s = s.strat[k]->compute_s;
    a.ops.push_back(std::move(c));
  }
  for (const Rec& r : s.reshards) {
    const ReshardCost& c = reshard(r.from, r.to);
    a.reshards.push_back(ReshardChoice{r.op, r.tensor, tt_.type(r.from), tt_.type(r.to), c.plan, c.time_s});
  }
  for (int o : s.out_type) a.output_types.push_back(tt_.type(o));
  a.compute_s = s.compute;
  a.comm_s = s.comm;
  a.predicted_time_s = s.time();
  a.param_bytes = s.param_bytes;
  a.peak_bytes = s.peak_lb();
  a.memory_limit_bytes = o_.memory_limit_bytes;
  return a;
}

Assignment Engine::run() {
  auto t0 = std::chrono::steady_clock::now();
  const int nops = static_cast<int>(p_.ops.size());
  State init;
  init.type.assign(p_.tensors.size(), -1);
  init.act.assign(nops + 1, 0);
  init.strat.assign(nops, nullptr);
  init.out_type.assign(p_.outputs.size(), -1);
  for (std::size_t t = 0; t < p_.tensors.size(); ++t)
    if (p_.tensors[t].role == Role::param) init.undecided_min += min_bytes(static_cast<int>(t));
  for (std::size_t t = 0; t < p_.tensors.size(); ++t) {
    const Tensor& x = p_.tensors[t];
    if (x.role != Role::value && x.fixed) decide(init, static_cast<int>(t), tt_.intern(*x.fixed));
  }
  std::vector<State> beam{init};
  for (int k = 0; k < nops; ++k) {
    std::vector<State> next;
    for (const State& s : beam) expand_op(s, k, next);
    if (next.empty())
      throw Error(fmt::format("line {}: no sharding of {} '{}' can be planned", p_.ops[k].line, name_of(p_.ops[k].kind),
                              p_.tensors[p_.ops[k].out].name));
    beam = select(std::move(next), k);
  }
  for (std::size_t j = 0; j < p_.outputs.size(); ++j) {
    std::vector<State> next;
    for (const State& s : beam) expand_output(s, static_cast<int>(j), next);
    if (next.empty()) throw Error(fmt::format("output '{}' cannot be made whole", p_.tensors[p_.outputs[j]].name));
    beam = select(std::move(next), nops);
  }
  const std::int64_t cap = o_.memory_limit_bytes;
  const State* best = nullptr;
  const State* leanest = nullptr;
  for (const State& s : beam) {
    if (!leanest || s.peak_lb() < leanest->peak_lb()) leanest = &s;
    if (cap > 0 && s.peak_lb() > cap) continue;
    if (!best || s.time() < best->time() || (s.time() == best->time() && s.peak_lb() < best->peak_lb())) best = &s;
  }
  stats_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.beam_width = o_.beam_width;
  if (!best) {
    std::int64_t over = leanest->peak_lb() - cap;
    throw NoFitError(fmt::format("no assignment fits in --memory {} B per device: the leanest found needs {} B, {} B over "
                                 "the cap ({:.1f}% more)",
                                 cap, leanest->peak_lb(), over, 100.0 * static_cast<double>(over) / static_cast<double>(cap)),
                     leanest->peak_lb(), cap);
  }
  Assignment a = finish(*best);
  a.stats = stats_;
  return a;
}

}  // namespace

Assignment search(const Program& p, const SearchOptions& opts) {
  if (opts.flops_per_s <= 0) throw Error("the compute rate (FLOP/s per device) must be positive");
  if (opts.memory_limit_bytes < 0) throw Error("the memory cap must not be negative");
  Engine e(p, opts);
  return e.run();
}

std::vector<std::pair<std::string, Type>> parse_assignment(std::string_view text, const Mesh& mesh) {
  std::vector<std::pair<std::string, Type>> out;
  std::size_t start = 0;
  int line = 0;
  while (start <= text.size()) {
    ++line;
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(start, end - start);
    start = end + 1;
    if (auto h = l.find('#'); h != std::string_view::npos) l = l.substr(0, h);
    auto colon = l.find(':');
    std::string_view name = l.substr(0, colon);
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.front()))) name.remove_prefix(1);
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.remove_suffix(1);
    if (colon == std::string_view::npos) {
      if (!name.empty()) throw Error(fmt::format("assignment line {}: expected `name : type`", line));
      if (end == text.size()) break;
      continue;
    }
    try {
      out.emplace_back(std::string(name), Type::parse(l.substr(colon + 1), mesh));
    } catch (const Error& e) {
      throw Error(fmt::format("assignment line {}: {}", line, e.what()));
    }
    if (end == text.size()) break;
  }
  return out;
}

Program with_types(const Program& p, const std::vector<std::pair<std::string, Type>>& types) {
  Program q = p;
  for (const auto& [name, t] : types) {
    int i = q.find(name);
    if (i < 0) throw Error(fmt::format("assignment: the program has no tensor '{}'", name));
    Tensor& x = q.tensors[i];
    if (t.global_shape() != x.shape || t.dtype != x.dtype)
      throw Error(fmt::format("assignment: '{}' is {}[{}] in the program, not {}", name, x.dtype,
                              fmt::join(x.shape, ","), t));
    if (t.op != ReduceOp::none) throw Error(fmt::format("assignment: '{}' must be whole (no reduce clause)", name));
    t.validate(p.mesh);
    x.fixed = t;
  }
  return q;
}

std::vector<std::pair<std::string, Type>> data_parallel_types(const Program& p) {
  std::vector<std::string> axes;
  std::int64_t k = 1;
  for (const Axis& a : p.mesh.axes())
    if (a.size > 1) axes.push_back(a.name), k *= a.size;
  std::vector<std::pair<std::string, Type>> out;
  for (const Tensor& t : p.tensors) {
    Type ty = t.replicated();
    if (t.role != Role::param && t.shape[0] >= k) ty.dims[0].axes = axes;
    out.emplace_back(t.name, ty);
  }
  return out;
}

std::string to_string(const Program& p, const Assignment& a) {
  std::string s = fmt::format("mesh {}\ntypes:\n", p.mesh);
  for (std::size_t t = 0; t < p.tensors.size(); ++t)
    s += fmt::format("  {:>6} {:<10} {}\n", name_of(p.tensors[t].role), p.tensors[t].name, a.types[t]);
  s += fmt::format("reshards ({}):\n", a.reshards.size());
  for (const ReshardChoice& r : a.reshards) {
    std::vector<std::string> ops;
    for (const Step& st : r.plan->steps) ops.push_back(fmt::format("{}{{{}}}", st.op, fmt::join(st.axes, ",")));
    s += fmt::format("  {:<8} {} -> {}  [{}]  {:.3g} s  ({})\n", p.tensors[r.tensor].name, r.from, r.to,
                     fmt::join(ops, " "), r.time_s,
                     r.op < 0 ? std::string("output") : fmt::format("before line {}", p.ops[r.op].line));
  }
  s += fmt::format("predicted time {:.4g} s (compute {:.4g} s, communication {:.4g} s)\n", a.predicted_time_s,
                   a.compute_s, a.comm_s);
  s += fmt::format("peak {} B per device (parameters {} B){}\n", a.peak_bytes, a.param_bytes,
                   a.memory_limit_bytes > 0 ? fmt::format(", cap {} B", a.memory_limit_bytes) : std::string());
  s += fmt::format("explored: {} states expanded, {} candidates priced, {} merged, {} op strategies, {} reshards "
                   "planned, beam {}, {:.3f} s\n",
                   a.stats.states_expanded, a.stats.candidates, a.stats.merged, a.stats.strategies,
                   a.stats.plans_synthesized, a.stats.beam_width, a.stats.seconds);
  return s;
}

}  // namespace reshard::automap
