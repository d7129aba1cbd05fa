#include "reshard/type.hpp"

#include <algorithm>

#include "lexer.hpp"
#include "reshard/error.hpp"

namespace reshard {

std::string_view name_of(ReduceOp op) {
  switch (op) {
    case ReduceOp::none: return "none";
    case ReduceOp::sum: return "sum";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
    case ReduceOp::prod: return "prod";
  }
  return "?";
}

std::int64_t Box::volume() const {
  std::int64_t v = 1;
  for (const Interval& i : dims) v *= i.extent();
  return v;
}

bool Box::contains(const Box& o) const {
  if (o.empty()) return true;
  for (std::size_t d = 0; d < dims.size(); ++d)
    if (o.dims[d].lo < dims[d].lo || o.dims[d].hi > dims[d].hi) return false;
  return true;
}

Box intersect(const Box& a, const Box& b) {
  Box r;
  r.dims.resize(a.dims.size());
  for (std::size_t d = 0; d < a.dims.size(); ++d) {
    r.dims[d].lo = std::max(a.dims[d].lo, b.dims[d].lo);
    r.dims[d].hi = std::max(r.dims[d].lo, std::min(a.dims[d].hi, b.dims[d].hi));
  }
  return r;
}

std::vector<std::int64_t> extents(const Box& b) {
  std::vector<std::int64_t> s;
  for (const Interval& i : b.dims) s.push_back(i.extent());
  return s;
}

std::vector<std::int64_t> offset_in(const Box& box, const Box& block) {
  std::vector<std::int64_t> s;
  for (std::size_t d = 0; d < box.dims.size(); ++d) s.push_back(box.dims[d].lo - block.dims[d].lo);
  return s;
}

Interval ceil_block(std::int64_t n, std::int64_t k, std::int64_t b) {
  std::int64_t B = k > 0 ? (n + k - 1) / k : n;
  return {std::min(n, b * B), std::min(n, (b + 1) * B)};
}

namespace {

std::optional<ReduceOp> reduce_from_name(std::string_view s) {
  if (s == "sum") return ReduceOp::sum;
  if (s == "max") return ReduceOp::max;
  if (s == "min") return ReduceOp::min;
  if (s == "prod") return ReduceOp::prod;
  return std::nullopt;
}

// The largest global array a type may describe. Sizes, products of sizes and small multiples of
// them (workspace, bytes moved, summed over the steps of a plan) stay far inside int64.
constexpr std::int64_t kMaxTypeBytes = std::int64_t{1} << 56;  // 64 PiB

// Records where each axis was used so the second use can name both places.
struct AxisUse {
  std::string name;
  std::size_t pos;
};

}  // namespace

Type Type::parse(std::string_view text, const Mesh& mesh) {
  detail::Lexer lx(text, "type");
  Type t;
  std::vector<AxisUse> used;
  auto use_axis = [&](std::string_view name, std::size_t pos) {
    if (mesh.axis_index(name) < 0)
      lx.fail(fmt::format("'{}' is not an axis of mesh {}", name, mesh.to_string()), pos);
    for (const AxisUse& u : used)
      if (u.name == name)
        lx.fail(fmt::format("axis '{}' is used twice (first at position {}); each mesh axis "
                            "may appear once in a type", name, u.pos), pos);
    used.push_back({std::string(name), pos});
  };

  std::size_t dt_pos = (lx.skip_ws(), lx.pos());
  std::string_view dt = lx.ident("a dtype (f64, f32, f16, bf16, i64, i32, i16, i8, u8)");
  auto dtype = dtype_from_name(dt);
  if (!dtype)
    lx.fail(fmt::format("unknown dtype '{}'; expected one of f64, f32, f16, bf16, i64, i32, i16, "
                        "i8, u8", dt), dt_pos);
  t.dtype = *dtype;
  lx.expect('[', "after the dtype");
  std::int64_t bytes = static_cast<std::int64_t>(size_of(t.dtype));
  if (!lx.accept(']')) {
    do {
      std::size_t size_pos = (lx.skip_ws(), lx.pos());
      std::int64_t n = lx.integer(fmt::format("the size of dim {}", t.dims.size()));
      if (n < 1) lx.fail(fmt::format("dim {} has size {}; sizes are >= 1", t.dims.size(), n), size_pos);
      if (n > kMaxTypeBytes / bytes)
        lx.fail(fmt::format("dim {} of size {} makes the array larger than 2^56 bytes", t.dims.size(), n), size_pos);
      bytes *= n;
      Dim d{n, {}};
      if (lx.accept('{')) {
        if (!lx.accept('}')) {
          do {
            std::size_t ap = (lx.skip_ws(), lx.pos());
            std::string_view a = lx.ident("an axis name");
            use_axis(a, ap);
            d.axes.emplace_back(a);
          } while (lx.accept(','));
          lx.expect('}', fmt::format("to close the axes of dim {}", t.dims.size()));
        }
      }
      t.dims.push_back(std::move(d));
    } while (lx.accept(','));
    lx.expect(']', "to close the dims");
  }
  if (!lx.at_end()) {
    std::size_t op_pos = lx.pos();
    if (!lx.at_ident()) lx.fail(fmt::format("unexpected '{}' after the dims", lx.peek()));
    std::string_view op = lx.ident("a reduction");
    auto r = reduce_from_name(op);
    if (!r) lx.fail(fmt::format("unknown reduction '{}'; expected sum, max, min or prod", op), op_pos);
    t.op = *r;
    lx.expect('{', fmt::format("after '{}'", op));
    do {
      std::size_t ap = (lx.skip_ws(), lx.pos());
      std::string_view a = lx.ident("an axis name");
      use_axis(a, ap);
      t.reduce_axes.emplace_back(a);
    } while (lx.accept(','));
    lx.expect('}', "to close the reduce clause");
    if (!lx.at_end()) lx.fail(fmt::format("unexpected '{}' after the type", lx.peek()));
  }
  return t;
}

void Type::validate(const Mesh& mesh) const {
  std::vector<std::string_view> seen;
  auto check = [&](const std::string& a, std::string_view where) {
    if (mesh.axis_index(a) < 0)
      throw MismatchError(fmt::format("type {}: '{}' ({}) is not an axis of mesh {}", to_string(), a,
                                      where, mesh.to_string()));
    if (std::find(seen.begin(), seen.end(), a) != seen.end())
      throw MismatchError(fmt::format("type {}: axis '{}' is used twice", to_string(), a));
    seen.push_back(a);
  };
  for (std::size_t d = 0; d < dims.size(); ++d) {
    if (dims[d].size < 0)
      throw MismatchError(fmt::format("type {}: dim {} has negative size", to_string(), d));
    for (const auto& a : dims[d].axes) check(a, fmt::format("dim {}", d));
  }
  for (const auto& a : reduce_axes) check(a, "reduce clause");
  std::int64_t bytes = static_cast<std::int64_t>(size_of(dtype));
  for (const Dim& d : dims) {
    if (d.size == 0) continue;  // checked without empty dims, so every partial product is bounded
    if (d.size > kMaxTypeBytes / bytes)
      throw MismatchError(fmt::format("type {}: the array is larger than 2^56 bytes", to_string()));
    bytes *= d.size;
  }
  if ((op == ReduceOp::none) != reduce_axes.empty())
    throw MismatchError(fmt::format("type {}: a reduce clause needs both an op and axes", to_string()));
}

std::vector<std::int64_t> Type::global_shape() const {
  std::vector<std::int64_t> s;
  s.reserve(dims.size());
  for (const Dim& d : dims) s.push_back(d.size);
  return s;
}

std::int64_t Type::global_elements() const {
  std::int64_t v = 1;
  for (const Dim& d : dims) v *= d.size;
  return v;
}

bool Type::uses(std::string_view axis) const { return dim_of(axis) >= 0 || is_partial_over(axis); }

int Type::dim_of(std::string_view axis) const {
  for (std::size_t d = 0; d < dims.size(); ++d)
    for (const auto& a : dims[d].axes)
      if (a == axis) return static_cast<int>(d);
  return -1;
}

bool Type::is_partial_over(std::string_view axis) const {
  return std::find(reduce_axes.begin(), reduce_axes.end(), axis) != reduce_axes.end();
}

std::int64_t Type::num_blocks(const Mesh& mesh, int d) const {
  std::int64_t k = 1;
  for (const auto& a : dims[d].axes) k *= mesh.axis_size(a);
  return k;
}

std::int64_t Type::block_index(const Mesh& mesh, int d, int device) const {
  std::int64_t b = 0;
  for (const auto& a : dims[d].axes) {
    int ai = mesh.axis_index(a);
    b = b * mesh.axes()[ai].size + mesh.coord(device, ai);
  }
  return b;
}

Interval Type::block_interval(const Mesh& mesh, int d, std::int64_t block) const {
  return ceil_block(dims[d].size, num_blocks(mesh, d), block);
}

Box Type::block(const Mesh& mesh, int device) const {
  Box b;
  b.dims.reserve(dims.size());
  for (int d = 0; d < rank(); ++d) b.dims.push_back(block_interval(mesh, d, block_index(mesh, d, device)));
  return b;
}

std::vector<std::int64_t> Type::local_shape(const Mesh& mesh, int device) const {
  Box b = block(mesh, device);
  std::vector<std::int64_t> s;
  for (const Interval& i : b.dims) s.push_back(i.extent());
  return s;
}

std::int64_t Type::local_elements(const Mesh& mesh, int device) const {
  return block(mesh, device).volume();
}

std::int64_t Type::local_bytes(const Mesh& mesh, int device) const {
  return local_elements(mesh, device) * static_cast<std::int64_t>(size_of(dtype));
}

std::int64_t Type::max_local_bytes(const Mesh& mesh) const {
  std::int64_t v = static_cast<std::int64_t>(size_of(dtype));
  for (int d = 0; d < rank(); ++d) v *= ceil_block(dims[d].size, num_blocks(mesh, d), 0).extent();
  return v;
}

std::string Type::to_string() const {
  std::string s = fmt::format("{}[", dtype);
  for (std::size_t d = 0; d < dims.size(); ++d) {
    s += fmt::format("{}{}", d ? ", " : "", dims[d].size);
    if (!dims[d].axes.empty()) s += fmt::format("{{{}}}", fmt::join(dims[d].axes, ","));
  }
  s += "]";
  if (op != ReduceOp::none) s += fmt::format(" {}{{{}}}", op, fmt::join(reduce_axes, ","));
  return s;
}

}  // namespace reshard
