#pragma once
// Internal to the synthesizer: a builder that chains typed steps, keeping only exact ones.
#include <algorithm>
#include <string>
#include <vector>

#include "reshard/plan.hpp"
#include "reshard/route.hpp"

namespace reshard::synth {

inline bool contains(const std::vector<std::string>& v, const std::string& a) {
  return std::find(v.begin(), v.end(), a) != v.end();
}
inline void erase(std::vector<std::string>& v, const std::string& a) {
  v.erase(std::remove(v.begin(), v.end(), a), v.end());
}

// Size-1 axes change no block: plan without them, relabel at the ends.
inline Type strip_trivial(const Type& t, const Mesh& m) {
  Type r = t;
  for (Dim& d : r.dims) std::erase_if(d.axes, [&](const std::string& a) { return m.axis_size(a) == 1; });
  std::erase_if(r.reduce_axes, [&](const std::string& a) { return m.axis_size(a) == 1; });
  if (r.reduce_axes.empty()) r.op = ReduceOp::none;
  return r;
}

inline bool same_dims(const Type& a, const Type& b) {
  for (std::size_t d = 0; d < a.dims.size(); ++d)
    if (a.dims[d].axes != b.dims[d].axes) return false;
  return true;
}

// Accumulates steps from the current type; rejects steps that would not be exact.
struct Builder {
  const Mesh& mesh;
  Type cur;
  std::vector<Step> steps;

  bool add(Op op, Type out, std::vector<std::string> axes, std::vector<int> dims,
           LocalKind kind = LocalKind::relabel) {
    Step s{op, cur, std::move(out), std::move(axes), std::move(dims), kind};
    if (!step_is_valid(mesh, s)) return false;
    cur = s.out;
    steps.push_back(std::move(s));
    return true;
  }

  void all_reduce(const std::vector<std::string>& axes) {
    if (axes.empty()) return;
    Type next = cur;
    for (const auto& a : axes) erase(next.reduce_axes, a);
    if (next.reduce_axes.empty()) next.op = ReduceOp::none;
    add(Op::all_reduce, std::move(next), axes, {});
  }

  // Exchange straight to `t`'s dims, keeping the current pending axes. Always exact.
  void exchange_to(const Type& t) {
    Type next = cur;
    for (std::size_t d = 0; d < next.dims.size(); ++d) next.dims[d].axes = t.dims[d].axes;
    if (same_dims(next, cur)) return;
    std::vector<std::string> axes;
    for (const Axis& a : mesh.axes())
      if (!cur.is_partial_over(a.name)) axes.push_back(a.name);
    add(Op::exchange, std::move(next), std::move(axes), {});
  }

  // Pending axes of the target that the current type replicates: local.
  void make_partial(const Type& t) {
    std::vector<std::string> add_axes;
    for (const auto& a : t.reduce_axes)
      if (!cur.is_partial_over(a)) add_axes.push_back(a);
    if (add_axes.empty()) return;
    Type next = cur;
    next.op = t.op;
    for (const auto& a : add_axes) next.reduce_axes.push_back(a);
    next.reduce_axes = t.reduce_axes;  // keep the target's order
    add(Op::local, std::move(next), add_axes, {}, LocalKind::make_partial);
  }
};

// Full replication, then slice (and make_partial): the naive strategy; always exact.
std::vector<Step> naive_steps(const Mesh& m, const Type& s, const Type& t);

}  // namespace reshard::synth
