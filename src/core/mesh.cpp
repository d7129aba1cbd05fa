#include "reshard/mesh.hpp"

#include <algorithm>
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

Mesh::Mesh(std::vector<Axis> axes, std::vector<int> ranks) : Mesh(std::move(axes)) {
  if (static_cast<int>(ranks.size()) != devices_)
    throw Error(fmt::format("mesh {} has {} devices but {} ranks are listed", to_string(), devices_, ranks.size()));
  std::vector<char> seen;
  bool identity = true;
  for (std::size_t d = 0; d < ranks.size(); ++d) {
    const int r = ranks[d];
    if (r < 0) throw Error(fmt::format("mesh {}: rank {} is negative", to_string(), r));
    if (static_cast<std::size_t>(r) >= seen.size()) seen.resize(static_cast<std::size_t>(r) + 1, 0);
    if (seen[r]++) throw Error(fmt::format("mesh {}: rank {} is listed twice", to_string(), r));
    identity = identity && r == static_cast<int>(d);
  }
  if (!identity) ranks_ = std::move(ranks);
}

int Mesh::device_of(int rank) const {
  if (ranks_.empty()) return rank >= 0 && rank < devices_ ? rank : -1;
  for (std::size_t d = 0; d < ranks_.size(); ++d)
    if (ranks_[d] == rank) return static_cast<int>(d);
  return -1;
}

int Mesh::ranks_needed() const {
  int n = devices_;
  for (int r : ranks_) n = std::max(n, r + 1);
  return ranks_.empty() ? devices_ : n;
}

namespace {

// The rank list after '@': ranks and inclusive ranges a-b, comma-separated, as many as the
// mesh has devices, no rank twice. Every error points at the offending rank or range.
std::vector<int> parse_ranks(detail::Lexer& lx, std::int64_t devices) {
  std::vector<int> ranks;
  std::vector<std::size_t> where;  // text position of each rank's item, for "listed twice"
  do {
    std::size_t pos = (lx.skip_ws(), lx.pos());
    std::int64_t lo = lx.integer("a rank");
    std::int64_t hi = lo;
    if (lx.accept('-')) hi = lx.integer(fmt::format("the end of the range {}-", lo));
    if (hi < lo) lx.fail(fmt::format("the range {}-{} is empty; write a-b with a <= b", lo, hi), pos);
    if (hi > INT_MAX - 1) lx.fail(fmt::format("rank {} is too large", hi), pos);
    if (static_cast<std::int64_t>(ranks.size()) + (hi - lo + 1) > devices)
      lx.fail(fmt::format("the mesh has {} devices but more ranks are listed", devices), pos);
    for (std::int64_t r = lo; r <= hi; ++r) {
      for (std::size_t i = 0; i < ranks.size(); ++i)
        if (ranks[i] == r) lx.fail(fmt::format("rank {} is listed twice (first at position {})", r, where[i]), pos);
      ranks.push_back(static_cast<int>(r));
      where.push_back(pos);
    }
  } while (lx.accept(','));
  if (static_cast<std::int64_t>(ranks.size()) != devices)
    lx.fail(fmt::format("the mesh has {} devices but {} ranks are listed", devices, ranks.size()));
  return ranks;
}

// `0-3,8,10-11`: ranges where ranks run consecutively.
std::string format_ranks(const std::vector<int>& ranks) {
  std::string s;
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    s += fmt::format("{}{}", i ? "," : "", ranks[i]);
    if (j > i) s += fmt::format("-{}", ranks[j]);
    i = j + 1;
  }
  return s;
}

}  // namespace

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
  std::vector<int> ranks;
  if (lx.accept('@')) ranks = parse_ranks(lx, devices);
  if (!lx.at_end()) lx.fail(fmt::format("unexpected '{}'; axes are separated by ','", lx.peek()));
  if (ranks.empty()) return Mesh(std::move(axes));
  return Mesh(std::move(axes), std::move(ranks));
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
  if (!ranks_.empty()) s += "@" + format_ranks(ranks_);
  return s;
}

}  // namespace reshard
