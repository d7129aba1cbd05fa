// Host kernels for program operations, the reference run and the in-process run (compute.hpp).
#include "reshard/auto/compute.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "reshard/error.hpp"

namespace reshard::automap {

namespace {

std::int64_t product(const std::vector<std::int64_t>& s) {
  return std::accumulate(s.begin(), s.end(), std::int64_t{1}, std::multiplies<>());
}

std::vector<std::int64_t> strides_of(const std::vector<std::int64_t>& s) {
  std::vector<std::int64_t> st(s.size(), 1);
  for (int i = static_cast<int>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

Array zeros(std::vector<std::int64_t> shape) {
  Array a;
  a.data.assign(static_cast<std::size_t>(product(shape)), 0.0f);
  a.shape = std::move(shape);
  return a;
}

void expect_shape(const Array& a, const std::vector<std::int64_t>& s, const char* what) {
  if (a.shape != s)
    throw Error(fmt::format("{}: array of shape [{}] where [{}] was expected", what, fmt::join(a.shape, ","),
                            fmt::join(s, ",")));
}

// Odometer over a shape: calls f with the offsets (one per stride set) of every index.
template <typename F>
void for_each_index(const std::vector<std::int64_t>& sizes, const std::vector<std::vector<std::int64_t>>& strides, F&& f) {
  if (product(sizes) == 0) return;
  std::vector<std::int64_t> idx(sizes.size(), 0), off(strides.size(), 0);
  while (true) {
    f(off);
    int d = static_cast<int>(sizes.size()) - 1;
    while (d >= 0) {
      ++idx[d];
      for (std::size_t k = 0; k < strides.size(); ++k) off[k] += strides[k][d];
      if (idx[d] < sizes[d]) break;
      for (std::size_t k = 0; k < strides.size(); ++k) off[k] -= strides[k][d] * idx[d];
      idx[d] = 0;
      --d;
    }
    if (d < 0) return;
  }
}

Array einsum(const Operation& op, const Array& a, const Array& b, const std::vector<std::int64_t>& out_shape) {
  EinsumSpec s = EinsumSpec::parse(op.spec);
  if (a.shape.size() != s.a.size() || b.shape.size() != s.b.size())
    throw Error(fmt::format("einsum '{}': operand ranks do not match the spec", op.spec));
  auto sa = strides_of(a.shape), sb = strides_of(b.shape);
  std::string outer = s.out, inner;
  for (char c : s.a + s.b)
    if (s.out.find(c) == std::string::npos && inner.find(c) == std::string::npos) inner += c;
  auto size_of_label = [&](char c) {
    auto i = s.a.find(c);
    auto j = s.b.find(c);
    if (i != std::string::npos && j != std::string::npos && a.shape[i] != b.shape[j])
      throw Error(fmt::format("einsum '{}': label '{}' is {} in one operand and {} in the other", op.spec, c,
                              a.shape[i], b.shape[j]));
    return i != std::string::npos ? a.shape[i] : b.shape[j];
  };
  auto stride = [&](char c, const std::string& l, const std::vector<std::int64_t>& st) -> std::int64_t {
    auto i = l.find(c);
    return i == std::string::npos ? 0 : st[i];
  };
  std::vector<std::int64_t> osz, isz;
  std::vector<std::vector<std::int64_t>> ost(3), ist(2);
  auto so = strides_of(out_shape);
  for (std::size_t k = 0; k < outer.size(); ++k) {
    osz.push_back(size_of_label(outer[k]));
    ost[0].push_back(stride(outer[k], s.a, sa));
    ost[1].push_back(stride(outer[k], s.b, sb));
    ost[2].push_back(so[k]);
  }
  if (osz != out_shape) throw Error(fmt::format("einsum '{}': result shape does not match", op.spec));
  for (char c : inner) {
    isz.push_back(size_of_label(c));
    ist[0].push_back(stride(c, s.a, sa));
    ist[1].push_back(stride(c, s.b, sb));
  }
  Array out = zeros(out_shape);
  const float* pa = a.data.data();
  const float* pb = b.data.data();
  for_each_index(osz, ost, [&](const std::vector<std::int64_t>& o) {
    double acc = 0;
    for_each_index(isz, ist, [&](const std::vector<std::int64_t>& i) {
      acc += static_cast<double>(pa[o[0] + i[0]]) * static_cast<double>(pb[o[1] + i[1]]);
    });
    out.data[o[2]] = static_cast<float>(acc);
  });
  return out;
}

float gelu(float x) {
  const float c = 0.7978845608028654f;  // sqrt(2/pi)
  return 0.5f * x * (1.0f + std::tanh(c * (x + 0.044715f * x * x * x)));
}

// Calls f(base, stride, n) for every line of `shape` along dim d.
template <typename F>
void for_each_line(const std::vector<std::int64_t>& shape, int d, F&& f) {
  std::int64_t n = shape[d], inner = 1, outer = 1;
  for (std::size_t i = d + 1; i < shape.size(); ++i) inner *= shape[i];
  for (int i = 0; i < d; ++i) outer *= shape[i];
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t in = 0; in < inner; ++in) f(o * n * inner + in, inner, n, o * inner + in);
}

}  // namespace

Array run_op(const Operation& op, const std::vector<const Array*>& args, const std::vector<std::int64_t>& out_shape) {
  const Array& a = *args.at(0);
  switch (op.kind) {
    case OpKind::einsum: return einsum(op, a, *args.at(1), out_shape);
    case OpKind::add:
    case OpKind::mul: {
      const Array& b = *args.at(1);
      expect_shape(b, a.shape, "add/mul operand");
      expect_shape(a, out_shape, "add/mul result");
      Array out = a;
      for (std::size_t i = 0; i < out.data.size(); ++i)
        out.data[i] = op.kind == OpKind::add ? a.data[i] + b.data[i] : a.data[i] * b.data[i];
      return out;
    }
    case OpKind::gelu:
    case OpKind::relu: {
      expect_shape(a, out_shape, "elementwise result");
      Array out = a;
      for (float& x : out.data) x = op.kind == OpKind::gelu ? gelu(x) : std::max(x, 0.0f);
      return out;
    }
    case OpKind::softmax: {
      expect_shape(a, out_shape, "softmax result");
      Array out = a;
      for_each_line(a.shape, op.dim, [&](std::int64_t base, std::int64_t st, std::int64_t n, std::int64_t) {
        float mx = -INFINITY;
        for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, a.data[base + i * st]);
        double total = 0;
        for (std::int64_t i = 0; i < n; ++i) total += std::exp(static_cast<double>(a.data[base + i * st] - mx));
        for (std::int64_t i = 0; i < n; ++i)
          out.data[base + i * st] = static_cast<float>(std::exp(static_cast<double>(a.data[base + i * st] - mx)) / total);
      });
      return out;
    }
    case OpKind::sum: {
      auto s = a.shape;
      s.erase(s.begin() + op.dim);
      expect_shape(Array{s, {}}, out_shape, "sum result");
      Array out = zeros(s);
      for_each_line(a.shape, op.dim, [&](std::int64_t base, std::int64_t st, std::int64_t n, std::int64_t o) {
        double total = 0;
        for (std::int64_t i = 0; i < n; ++i) total += a.data[base + i * st];
        out.data[o] = static_cast<float>(total);
      });
      return out;
    }
    case OpKind::transpose: {
      std::vector<std::int64_t> s;
      for (int d : op.perm) s.push_back(a.shape.at(d));
      expect_shape(Array{s, {}}, out_shape, "transpose result");
      Array out = zeros(s);
      auto sa = strides_of(a.shape), so = strides_of(s);
      std::vector<std::int64_t> src;
      for (int d : op.perm) src.push_back(sa[d]);
      for_each_index(s, {src, so}, [&](const std::vector<std::int64_t>& o) { out.data[o[1]] = a.data[o[0]]; });
      return out;
    }
    case OpKind::reshape: {
      if (product(out_shape) != product(a.shape)) throw Error("reshape: local element counts differ");
      Array out = a;
      out.shape = out_shape;
      return out;
    }
  }
  throw Error("unknown operation");
}

float input_value(const Program& p, int t, std::int64_t linear) {
  std::uint64_t x = static_cast<std::uint64_t>(linear) * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(t + 1) * 0xD1B54A32D192ED03ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  float u = static_cast<float>(x >> 40) / static_cast<float>(1ull << 24) * 2.0f - 1.0f;
  const Tensor& ten = p.tensors[t];
  if (ten.role == Role::param) u /= std::sqrt(static_cast<float>(ten.shape[0]));
  return u;
}

Array fill_box(const Program& p, int t, const Box& box) {
  Array out = zeros(extents(box));
  auto gs = strides_of(p.tensors[t].shape);
  std::int64_t base = 0;
  for (std::size_t d = 0; d < box.dims.size(); ++d) base += box.dims[d].lo * gs[d];
  std::size_t i = 0;
  for_each_index(out.shape, {gs}, [&](const std::vector<std::int64_t>& o) { out.data[i++] = input_value(p, t, base + o[0]); });
  return out;
}

std::vector<Array> reference(const Program& p) {
  std::vector<Array> v(p.tensors.size());
  for (std::size_t t = 0; t < p.tensors.size(); ++t) {
    if (p.tensors[t].role == Role::value) continue;
    Box all;
    for (auto s : p.tensors[t].shape) all.dims.push_back({0, s});
    v[t] = fill_box(p, static_cast<int>(t), all);
  }
  for (const Operation& op : p.ops) {
    std::vector<const Array*> args;
    for (int a : op.args) args.push_back(&v[a]);
    v[op.out] = run_op(op, args, p.tensors[op.out].shape);
  }
  return v;
}

namespace {

// Copies box `b` between a global array and a local one (the block `block` of the global).
template <typename F>
void for_each_in_box(const std::vector<std::int64_t>& gshape, const Box& block, F&& f) {
  auto gs = strides_of(gshape);
  auto ls = strides_of(extents(block));
  std::int64_t base = 0;
  for (std::size_t d = 0; d < block.dims.size(); ++d) base += block.dims[d].lo * gs[d];
  for_each_index(extents(block), {gs, ls}, [&](const std::vector<std::int64_t>& o) { f(base + o[0], o[1]); });
}

}  // namespace

Array assemble(const Mesh& m, const Type& type, const std::vector<Array>& locals) {
  Array g = zeros(type.global_shape());
  for (int dev = 0; dev < m.num_devices(); ++dev) {
    // One device per (block, reduce-group member): coordinate 0 on every axis the type leaves
    // replicated.
    bool first = true;
    for (int ax = 0; ax < m.num_axes(); ++ax)
      if (!type.uses(m.axes()[ax].name) && m.coord(dev, ax) != 0) first = false;
    if (!first) continue;
    Box b = type.block(m, dev);
    expect_shape(locals.at(dev), extents(b), "assemble: local array");
    const auto& l = locals[dev].data;
    for_each_in_box(g.shape, b, [&](std::int64_t gi, std::int64_t li) { g.data[gi] += l[li]; });
  }
  return g;
}

Array cut(const Mesh& m, const Type& type, const Array& global, int device) {
  Box b = type.block(m, device);
  Array out = zeros(extents(b));
  bool holder = true;  // of a pending sum: the first device of its group holds the value
  for (const auto& ax : type.reduce_axes)
    if (m.coord(device, m.axis_index(ax)) != 0) holder = false;
  if (!holder) return out;
  for_each_in_box(global.shape, b, [&](std::int64_t gi, std::int64_t li) { out.data[li] = global.data[gi]; });
  return out;
}

std::vector<Array> run_virtual(const Program& p, const Assignment& a) {
  const Mesh& m = p.mesh;
  const int n = m.num_devices();
  std::vector<std::vector<Array>> v(p.tensors.size());  // per tensor, per device: in a.types[t]
  for (std::size_t t = 0; t < p.tensors.size(); ++t) {
    if (p.tensors[t].role == Role::value) continue;
    for (int d = 0; d < n; ++d) v[t].push_back(fill_box(p, static_cast<int>(t), a.types[t].block(m, d)));
  }
  auto move = [&](const std::vector<Array>& local, const Type& from, const Type& to) {
    if (from == to) return local;
    Array g = assemble(m, from, local);
    std::vector<Array> out;
    for (int d = 0; d < n; ++d) out.push_back(cut(m, to, g, d));
    return out;
  };
  for (std::size_t k = 0; k < p.ops.size(); ++k) {
    const Operation& op = p.ops[k];
    const OpChoice& c = a.ops[k];
    std::vector<std::vector<Array>> args;
    for (std::size_t i = 0; i < op.args.size(); ++i) args.push_back(move(v[op.args[i]], a.types[op.args[i]], c.args[i]));
    std::vector<Array> out;
    for (int d = 0; d < n; ++d) {
      std::vector<const Array*> ptrs;
      for (auto& x : args) ptrs.push_back(&x[d]);
      out.push_back(run_op(op, ptrs, c.out.local_shape(m, d)));
    }
    v[op.out] = move(out, c.out, a.types[op.out]);
  }
  std::vector<Array> res;
  for (std::size_t j = 0; j < p.outputs.size(); ++j) {
    int t = p.outputs[j];
    res.push_back(assemble(m, a.output_types[j], move(v[t], a.types[t], a.output_types[j])));
  }
  return res;
}

double relative_error(const Array& a, const Array& b) {
  expect_shape(a, b.shape, "relative_error");
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.data.size(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a.data[i]) - b.data[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b.data[i])));
  }
  return diff / (scale > 0 ? scale : 1.0);
}

}  // namespace reshard::automap
