#include "reshard/mesh.hpp"

#include <climits>

#include "lexer.hpp"
#include "reshard/error.hpp"

namespace reshard {

Mesh::Mesh(std::vector<Axis> axes) : axes_(std::move(axes)) {
  if (axes_.empty()) throw Error("a mesh needs at least one axis");
  if (axes_.size() > kMaxAxes)
    throw Error(fmt::format("a mesh has at most {} axes; this one has {}", kMaxAxes, axes_.size()));
  std::int64_t devices = 1;
  for (std::size_t i = 0; i < axes_.size(); ++i) {
    const Axis& a = axes_[i];
    if (a.name.empty()) throw Error("mesh axis names must not be empty");
    if (a.size < 1) throw Error(fmt::format("mesh axis '{}' has size {}; sizes are >= 1", a.name, a.size));
    for (std::size_t j = 0; j < i; ++j)
      if (axes_[j].name == a.name) throw Error(fmt::format("mesh axis '{}' appears twice", a.name));
    devices *= a.size;
    if (devices > INT_MAX) throw Error("the mesh has too many devices");
  }
  devices_ = static_cast<int>(devices);
  stride_.assign(axes_.size(), 1);
  for (int i = static_cast<int>(axes_.size()) - 2; i >= 0; --i)
    stride_[i] = stride_[i + 1] * axes_[i + 1].size;
}

Mesh Mesh::parse(std::string_view text) {
  detail::Lexer lx(text, "mesh");
  std::vector<Axis> axes;
  if (lx.at_end()) lx.fail("the mesh is empty; expected axes like x=2,y=4");
  std::int64_t devices = 1;
  do {
    std::size_t name_pos = (lx.skip_ws(), lx.pos());
    if (axes.size() == Mesh::kMaxAxes)
      lx.fail(fmt::format("a mesh has at most {} axes (axis sets are 64-bit masks)", Mesh::kMaxAxes), name_pos);
    std::string name(lx.ident("an axis name"));
    for (const Axis& a : axes)
      if (a.name == name) lx.fail(fmt::format("axis '{}' appears twice", name), name_pos);
    lx.expect('=', fmt::format("after axis name '{}'", name));
    std::size_t size_pos = (lx.skip_ws(), lx.pos());
    std::int64_t size = lx.integer(fmt::format("the size of axis '{}'", name));
    if (size < 1) lx.fail(fmt::format("axis '{}' has size {}; sizes are >= 1", name, size), size_pos);
    // Check the size before multiplying: both factors <= INT_MAX cannot overflow int64.
    if (size > INT_MAX) lx.fail("the mesh has too many devices", size_pos);
    devices *= size;
    if (devices > INT_MAX) lx.fail("the mesh has too many devices", size_pos);
    axes.push_back({std::move(name), static_cast<int>(size)});
  } while (lx.accept(','));
  if (!lx.at_end()) lx.fail(fmt::format("unexpected '{}'; axes are separated by ','", lx.peek()));
  return Mesh(std::move(axes));
}

int Mesh::axis_index(std::string_view name) const {
  for (std::size_t i = 0; i < axes_.size(); ++i)
    if (axes_[i].name == name) return static_cast<int>(i);
  return -1;
}

int Mesh::axis_size(std::string_view name) const {
  int i = axis_index(name);
  if (i < 0) throw Error(fmt::format("'{}' is not an axis of mesh {}", name, to_string()));
  return axes_[i].size;
}

std::string Mesh::to_string() const {
  std::string s;
  for (std::size_t i = 0; i < axes_.size(); ++i)
    s += fmt::format("{}{}={}", i ? "," : "", axes_[i].name, axes_[i].size);
  return s;
}

}  // namespace reshard
