#pragma once
// A named device mesh (docs/design.md 1): `x=2,y=4`. Devices are numbered row-major over the axes
// as written (first axis most significant).
//
// A mesh may sit on chosen ranks of its communicator (docs/batched.md): `dp=2,tp=2@4-7` or
// `tp=2@4,6` puts device d on the d-th rank listed. Without `@` device d is rank d. A rank list
// equal to 0..n-1 is the same mesh as none (it is dropped, so the two compare equal).
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace reshard {

struct Axis {
  std::string name;
  int size = 1;
  bool operator==(const Axis&) const = default;
};

class Mesh {
 public:
  // Axis sets are 64-bit masks over axis indices (routing, validity checks): a mesh has at
  // most this many axes, checked by the constructor and by parse() (with the position).
  static constexpr int kMaxAxes = 64;

  Mesh() = default;
  // Pre: names unique identifiers, sizes >= 1, at most kMaxAxes axes (throws reshard::Error
  // otherwise).
  explicit Mesh(std::vector<Axis> axes);
  // Pre: ranks.size() == num_devices(), no rank twice, all >= 0 (throws Error otherwise).
  // Post: ranks() is `ranks`, or empty when `ranks` is 0..n-1.
  Mesh(std::vector<Axis> axes, std::vector<int> ranks);
  // Parses `x=2,y=4` or `x=2,y=4@0-3,8-11`; throws ParseError naming the problem and position
  // (a rank twice, a range a-b with a > b, as many ranks as devices).
  static Mesh parse(std::string_view text);

  const std::vector<Axis>& axes() const { return axes_; }
  int num_axes() const { return static_cast<int>(axes_.size()); }
  int num_devices() const { return devices_; }
  // Index of the axis called `name`, or -1.
  int axis_index(std::string_view name) const;
  int axis_size(std::string_view name) const;  // throws if unknown
  // Coordinate of `device` along axis `axis` (index).
  int coord(int device, int axis) const { return (device / stride_[axis]) % axes_[axis].size; }
  // Row-major stride of an axis in the device numbering.
  int stride(int axis) const { return stride_[axis]; }
  std::string to_string() const;
  bool operator==(const Mesh& o) const { return axes_ == o.axes_ && ranks_ == o.ranks_; }

  // The rank list: empty when device d is rank d.
  const std::vector<int>& ranks() const { return ranks_; }
  // Communicator rank of `device`, and the device on `rank` (-1 if the rank is not in the mesh).
  int rank_of(int device) const { return ranks_.empty() ? device : ranks_[device]; }
  int device_of(int rank) const;
  // Largest rank the mesh uses plus one: the communicator must have at least this many ranks.
  int ranks_needed() const;
  // The same axes on ranks 0..n-1 (what plans and types are made on: they number devices).
  Mesh without_ranks() const { return Mesh(axes_); }

 private:
  std::vector<Axis> axes_;
  std::vector<int> ranks_;
  std::vector<int> stride_;
  int devices_ = 1;
};

inline std::ostream& operator<<(std::ostream& os, const Mesh& v) { return os << v.to_string(); }

}  // namespace reshard

template <>
struct fmt::formatter<reshard::Mesh> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::Mesh& m, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(m.to_string(), ctx);
  }
};
