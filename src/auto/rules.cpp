// Sharding rules of the program operations (rules.hpp).
#include "reshard/auto/rules.hpp"

#include <algorithm>
#include <set>

#include "reshard/error.hpp"

namespace reshard::automap {

namespace {

bool pending(const Type& t) { return t.op != ReduceOp::none; }

// Axes in mesh order, for a canonical reduce clause.
std::vector<std::string> in_mesh_order(const Mesh& m, std::vector<std::string> axes) {
  std::sort(axes.begin(), axes.end(), [&](const auto& a, const auto& b) { return m.axis_index(a) < m.axis_index(b); });
  return axes;
}

Type with_reduce(Type t, const Mesh& m, std::vector<std::string> axes) {
  t.reduce_axes = in_mesh_order(m, std::move(axes));
  t.op = t.reduce_axes.empty() ? ReduceOp::none : ReduceOp::sum;
  return t;
}

std::int64_t blocks(const Mesh& m, const std::vector<std::string>& axes) {
  std::int64_t k = 1;
  for (const auto& a : axes) k *= m.axis_size(a);
  return k;
}

bool valid(const Type& t, const Mesh& m) {
  try {
    t.validate(m);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Reshape groups: maximal runs of input dims and output dims with equal products.
struct Group {
  std::vector<int> in, out;
};
std::vector<Group> reshape_groups(const std::vector<std::int64_t>& in, const std::vector<std::int64_t>& out) {
  std::vector<Group> g;
  std::size_t i = 0, j = 0;
  while (i < in.size() || j < out.size()) {
    Group gr;
    std::int64_t pi = 1, po = 1;
    if (i < in.size()) gr.in.push_back(static_cast<int>(i)), pi = in[i++];
    if (j < out.size()) gr.out.push_back(static_cast<int>(j)), po = out[j++];
    while (pi != po) {
      if (pi < po && i < in.size()) gr.in.push_back(static_cast<int>(i)), pi *= in[i++];
      else if (po < pi && j < out.size()) gr.out.push_back(static_cast<int>(j)), po *= out[j++];
      else return {};  // products differ: not a reshape (shape checks rule this out)
    }
    g.push_back(std::move(gr));
  }
  return g;
}

std::optional<Type> propagate_einsum(const Program& p, const Operation& op, const Type& a, const Type& b) {
  const Mesh& m = p.mesh;
  EinsumSpec s = EinsumSpec::parse(op.spec);
  if ((pending(a) && a.op != ReduceOp::sum) || (pending(b) && b.op != ReduceOp::sum)) return std::nullopt;
  if (pending(a) && pending(b)) return std::nullopt;  // a product of two sums is not a sum of products
  // label -> axes, equal wherever the label occurs
  std::vector<std::pair<char, std::vector<std::string>>> labels;
  auto axes_of = [&](char c) -> std::vector<std::string>* {
    for (auto& [l, ax] : labels)
      if (l == c) return &ax;
    return nullptr;
  };
  for (std::size_t i = 0; i < s.a.size(); ++i) labels.push_back({s.a[i], a.dims[i].axes});
  for (std::size_t i = 0; i < s.b.size(); ++i) {
    if (auto* ax = axes_of(s.b[i])) {
      if (*ax != b.dims[i].axes) return std::nullopt;
    } else {
      labels.push_back({s.b[i], b.dims[i].axes});
    }
  }
  // Every axis splits at most one label, and an operand's pending axes are not used by the other
  // operand (it must be replicated along them for the product to distribute over the sum).
  std::set<std::string> used;
  for (auto& [l, ax] : labels)
    for (auto& x : ax)
      if (!used.insert(x).second) return std::nullopt;
  for (const auto& x : a.reduce_axes)
    if (b.uses(x)) return std::nullopt;
  for (const auto& x : b.reduce_axes)
    if (a.uses(x)) return std::nullopt;
  Type out;
  out.dtype = a.dtype;
  std::vector<std::string> red = a.reduce_axes;
  red.insert(red.end(), b.reduce_axes.begin(), b.reduce_axes.end());
  for (auto& [l, ax] : labels)
    if (s.out.find(l) == std::string::npos) red.insert(red.end(), ax.begin(), ax.end());
  const Tensor& res = p.tensors[op.out];
  for (std::size_t i = 0; i < s.out.size(); ++i) out.dims.push_back(Dim{res.shape[i], *axes_of(s.out[i])});
  out = with_reduce(out, m, red);
  return out;
}

std::optional<Type> propagate_reshape(const Program& p, const Operation& op, const Type& a) {
  const Mesh& m = p.mesh;
  const Tensor& res = p.tensors[op.out];
  Type out = p.tensors[op.out].replicated();
  out.dtype = a.dtype;
  auto groups = reshape_groups(a.global_shape(), res.shape);
  if (groups.empty()) return std::nullopt;
  for (const Group& g : groups) {
    for (std::size_t k = 1; k < g.in.size(); ++k)
      if (!a.dims[g.in[k]].axes.empty()) return std::nullopt;
    if (g.in.empty()) continue;
    const Dim& d = a.dims[g.in[0]];
    if (d.axes.empty()) continue;
    if (g.out.empty()) return std::nullopt;
    if (g.in.size() == 1 && g.out.size() == 1) {  // one dim to one dim of the same size: any split
      out.dims[g.out[0]].axes = d.axes;
      continue;
    }
    // The major dim's blocks are whole runs of the group's row-major order; they stay so in the
    // result's major dim exactly when both sizes divide evenly.
    std::int64_t k = blocks(m, d.axes);
    if (d.size % k != 0 || res.shape[g.out[0]] % k != 0) return std::nullopt;
    out.dims[g.out[0]].axes = d.axes;
  }
  out.op = a.op;
  out.reduce_axes = a.reduce_axes;
  return out;
}

}  // namespace

std::optional<Type> propagate(const Program& p, const Operation& op, const std::vector<Type>& args) {
  const Mesh& m = p.mesh;
  for (std::size_t i = 0; i < args.size(); ++i)
    if (args[i].global_shape() != p.tensors[op.args[i]].shape) return std::nullopt;
  const Type& a = args[0];
  switch (op.kind) {
    case OpKind::einsum: return propagate_einsum(p, op, a, args[1]);
    case OpKind::add:
      if (!(a == args[1]) || (pending(a) && a.op != ReduceOp::sum)) return std::nullopt;
      return a;
    case OpKind::mul: {
      const Type& b = args[1];
      if (a.dims != b.dims || (pending(a) && pending(b))) return std::nullopt;
      const Type& part = pending(a) ? a : b;
      if (pending(part) && part.op != ReduceOp::sum) return std::nullopt;
      Type out = part;
      out.dtype = a.dtype;
      return out;
    }
    case OpKind::gelu:
    case OpKind::relu:
      if (pending(a)) return std::nullopt;
      return a;
    case OpKind::softmax:
      if (pending(a) || !a.dims[op.dim].axes.empty()) return std::nullopt;
      return a;
    case OpKind::sum: {
      if (pending(a) && a.op != ReduceOp::sum) return std::nullopt;
      Type out = a;
      std::vector<std::string> red = a.reduce_axes;
      red.insert(red.end(), a.dims[op.dim].axes.begin(), a.dims[op.dim].axes.end());
      out.dims.erase(out.dims.begin() + op.dim);
      return with_reduce(out, m, red);
    }
    case OpKind::transpose: {
      Type out = a;
      for (std::size_t i = 0; i < op.perm.size(); ++i) out.dims[i] = a.dims[op.perm[i]];
      return out;
    }
    case OpKind::reshape: return propagate_reshape(p, op, a);
  }
  return std::nullopt;
}

std::vector<Type> resolutions(const Type& t, const Mesh& m) {
  if (!pending(t)) return {t};
  std::vector<Type> out;
  Type whole = with_reduce(t, m, {});
  out.push_back(whole);
  std::int64_t k = blocks(m, t.reduce_axes);
  for (int d = 0; d < t.rank(); ++d) {
    Type rs = whole;
    if (t.dims[d].size < blocks(m, t.dims[d].axes) * k) continue;
    rs.dims[d].axes.insert(rs.dims[d].axes.end(), t.reduce_axes.begin(), t.reduce_axes.end());
    if (valid(rs, m)) out.push_back(rs);
  }
  return out;
}

namespace {

// Non-empty subsets of the mesh axes larger than 1, each in mesh order.
std::vector<std::vector<std::string>> axis_subsets(const Mesh& m, const std::vector<std::string>& allowed) {
  std::vector<std::string> ax;
  for (const Axis& a : m.axes())
    if (a.size > 1 && std::find(allowed.begin(), allowed.end(), a.name) != allowed.end()) ax.push_back(a.name);
  std::vector<std::vector<std::string>> out;
  for (unsigned mask = 1; mask < (1u << ax.size()); ++mask) {
    std::vector<std::string> s;
    for (std::size_t i = 0; i < ax.size(); ++i)
      if (mask & (1u << i)) s.push_back(ax[i]);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<std::string> all_axes(const Mesh& m) {
  std::vector<std::string> v;
  for (const Axis& a : m.axes()) v.push_back(a.name);
  return v;
}

void add_unique(std::vector<Type>& v, const Type& t) {
  if (std::find(v.begin(), v.end(), t) == v.end()) v.push_back(t);
}

}  // namespace

std::vector<Type> free_types(const Tensor& t, const Mesh& m) {
  std::vector<Type> out{t.replicated()};
  for (const auto& s : axis_subsets(m, all_axes(m)))
    for (int d = 0; d < t.rank(); ++d) {
      if (t.shape[d] < blocks(m, s)) continue;
      Type x = t.replicated();
      x.dims[d].axes = s;
      out.push_back(x);
    }
  return out;
}

std::vector<Type> storage_types(const Type& required, const Mesh& m) {
  std::vector<Type> out{required};
  if (pending(required)) return out;
  std::vector<std::string> unused;
  for (const Axis& a : m.axes())
    if (!required.uses(a.name)) unused.push_back(a.name);
  // The dim with the largest local extent takes the extra axes (appended at the minor end, so
  // that gathering them back is one all-gather).
  int best = -1;
  std::int64_t best_local = -1;
  for (int d = 0; d < required.rank(); ++d) {
    std::int64_t k = blocks(m, required.dims[d].axes);
    std::int64_t local = (required.dims[d].size + k - 1) / k;
    if (local > best_local) best = d, best_local = local;
  }
  if (best < 0) return out;
  for (const auto& s : axis_subsets(m, unused)) {
    if (best_local < blocks(m, s)) continue;
    Type x = required;
    x.dims[best].axes.insert(x.dims[best].axes.end(), s.begin(), s.end());
    out.push_back(x);
  }
  return out;
}

double op_flops(const Program& p, const Operation& op, const std::vector<Type>& args) {
  const Mesh& m = p.mesh;
  auto local_elems = [&](const Type& t) {
    double n = 1;
    for (int d = 0; d < t.rank(); ++d) {
      std::int64_t k = t.num_blocks(m, d);
      n *= static_cast<double>((t.dims[d].size + k - 1) / k);
    }
    return n;
  };
  switch (op.kind) {
    case OpKind::einsum: {
      EinsumSpec s = EinsumSpec::parse(op.spec);
      double n = 2;
      std::string seen;
      for (int which = 0; which < 2; ++which) {
        const std::string& l = which ? s.b : s.a;
        const Type& t = args[which];
        for (std::size_t i = 0; i < l.size(); ++i) {
          if (seen.find(l[i]) != std::string::npos) continue;
          seen += l[i];
          std::int64_t k = t.num_blocks(m, static_cast<int>(i));
          n *= static_cast<double>((t.dims[i].size + k - 1) / k);
        }
      }
      return n;
    }
    case OpKind::gelu: return 8 * local_elems(args[0]);  // tanh approximation
    case OpKind::softmax: return 5 * local_elems(args[0]);
    default: return local_elems(args[0]);
  }
}

namespace {

void push_if_valid(const Program& p, const Operation& op, std::vector<OpStrategy>& out, std::vector<Type> args) {
  for (const Type& t : args)
    if (!valid(t, p.mesh)) return;
  auto r = propagate(p, op, args);
  if (!r || !valid(*r, p.mesh)) return;
  for (const OpStrategy& s : out)
    if (s.args == args) return;
  double f = op_flops(p, op, args);
  out.push_back(OpStrategy{std::move(args), std::move(*r), f});
}

void einsum_strategies(const Program& p, const Operation& op, const std::vector<std::optional<Type>>& cur,
                       std::vector<OpStrategy>& out) {
  const Mesh& m = p.mesh;
  EinsumSpec s = EinsumSpec::parse(op.spec);
  std::string labels;
  for (char c : s.a + s.b)
    if (labels.find(c) == std::string::npos) labels += c;
  std::vector<std::int64_t> size(labels.size());
  for (std::size_t i = 0; i < labels.size(); ++i) {
    auto j = s.a.find(labels[i]);
    size[i] = j != std::string::npos ? p.tensors[op.args[0]].shape[j] : p.tensors[op.args[1]].shape[s.b.find(labels[i])];
  }
  std::vector<int> axes;  // mesh axes that can split something
  for (int i = 0; i < m.num_axes(); ++i)
    if (m.axes()[i].size > 1) axes.push_back(i);
  const std::size_t L = labels.size() + 1;  // the last choice: replicate along the axis
  std::size_t combos = 1;
  for (std::size_t i = 0; i < axes.size(); ++i) combos *= L;
  const Tensor& ta = p.tensors[op.args[0]];
  const Tensor& tb = p.tensors[op.args[1]];
  for (std::size_t c = 0; c < combos; ++c) {
    std::vector<std::vector<std::string>> lab(labels.size());
    std::size_t x = c;
    for (int ax : axes) {
      std::size_t choice = x % L;
      x /= L;
      if (choice < labels.size()) lab[choice].push_back(m.axes()[ax].name);
    }
    bool fits = true;
    for (std::size_t i = 0; i < labels.size(); ++i) fits = fits && size[i] >= blocks(m, lab[i]);
    if (!fits) continue;
    Type a = ta.replicated(), b = tb.replicated();
    for (std::size_t i = 0; i < s.a.size(); ++i) a.dims[i].axes = lab[labels.find(s.a[i])];
    for (std::size_t i = 0; i < s.b.size(); ++i) b.dims[i].axes = lab[labels.find(s.b[i])];
    push_if_valid(p, op, out, {a, b});
    // A pending operand may flow in unreduced when its dims already match.
    for (int w = 0; w < 2; ++w) {
      const auto& ct = cur[w];
      if (!ct || !pending(*ct)) continue;
      Type& t = w ? b : a;
      Type keep = t;
      keep.op = ct->op;
      keep.reduce_axes = ct->reduce_axes;
      if (keep.dims == ct->dims) push_if_valid(p, op, out, w ? std::vector<Type>{a, keep} : std::vector<Type>{keep, b});
    }
  }
}

// Seeds for an argument of a propagation-driven op.
std::vector<Type> seeds(const Program& p, int tensor, const std::optional<Type>& cur) {
  if (!cur) return free_types(p.tensors[tensor], p.mesh);
  std::vector<Type> v{*cur};
  for (const Type& r : resolutions(*cur, p.mesh)) add_unique(v, r);
  return v;
}

}  // namespace

std::vector<OpStrategy> strategies(const Program& p, const Operation& op, const std::vector<std::optional<Type>>& cur) {
  const Mesh& m = p.mesh;
  std::vector<OpStrategy> out;
  switch (op.kind) {
    case OpKind::einsum: einsum_strategies(p, op, cur, out); break;
    case OpKind::add:
    case OpKind::mul: {
      std::vector<Type> cand = seeds(p, op.args[0], cur[0]);
      for (const Type& t : seeds(p, op.args[1], cur[1])) add_unique(cand, t);
      for (const Type& t : cand) {
        Type whole = t;
        whole.op = ReduceOp::none;
        whole.reduce_axes.clear();
        push_if_valid(p, op, out, {t, t});
        push_if_valid(p, op, out, {whole, whole});
        if (op.kind == OpKind::mul && pending(t)) {
          push_if_valid(p, op, out, {t, whole});
          push_if_valid(p, op, out, {whole, t});
        }
      }
      break;
    }
    case OpKind::softmax: {
      for (const Type& t0 : seeds(p, op.args[0], cur[0]))
        for (const Type& t : resolutions(t0, m)) {
          push_if_valid(p, op, out, {t});
          const Dim& d = t.dims[op.dim];
          if (d.axes.empty()) continue;
          Type gathered = t;  // all-gather the softmax dim
          gathered.dims[op.dim].axes.clear();
          push_if_valid(p, op, out, {gathered});
          for (int j = 0; j < t.rank(); ++j) {  // or move its axes to another dim (all-to-all)
            if (j == op.dim) continue;
            Type moved = gathered;
            moved.dims[j].axes.insert(moved.dims[j].axes.end(), d.axes.begin(), d.axes.end());
            if (moved.dims[j].size >= blocks(m, moved.dims[j].axes)) push_if_valid(p, op, out, {moved});
          }
        }
      break;
    }
    case OpKind::reshape: {
      for (const Type& t : seeds(p, op.args[0], cur[0])) {
        push_if_valid(p, op, out, {t});
        Type flat = t;  // what any reshape accepts: no split dims
        for (Dim& d : flat.dims) d.axes.clear();
        push_if_valid(p, op, out, {flat});
        for (const Type& r : resolutions(t, m)) push_if_valid(p, op, out, {r});
      }
      break;
    }
    default:
      for (const Type& t : seeds(p, op.args[0], cur[0])) {
        push_if_valid(p, op, out, {t});
        for (const Type& r : resolutions(t, m)) push_if_valid(p, op, out, {r});
      }
  }
  return out;
}

}  // namespace reshard::automap
