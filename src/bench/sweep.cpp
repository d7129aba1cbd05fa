// The size sweep of `reshard bench` (sweep.hpp).
#include "sweep.hpp"

#include <cctype>
#include <cmath>

#include <fmt/format.h>

#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard::bench {

std::int64_t parse_size(std::string_view text) {
  std::size_t i = 0;
  std::int64_t n = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
    if (n > (INT64_MAX - 9) / 10) throw Error(fmt::format("size '{}' is too large", text));
    n = n * 10 + (text[i++] - '0');
  }
  if (i == 0) throw Error(fmt::format("size '{}': expected a number of bytes, e.g. 4096, 64K, 1M or 2G", text));
  std::string unit(text.substr(i));
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  int shift = 0;
  if (unit == "" || unit == "B") shift = 0;
  else if (unit == "K" || unit == "KB" || unit == "KIB") shift = 10;
  else if (unit == "M" || unit == "MB" || unit == "MIB") shift = 20;
  else if (unit == "G" || unit == "GB" || unit == "GIB") shift = 30;
  else throw Error(fmt::format("size '{}': unknown unit '{}' (use K, M or G)", text, text.substr(i)));
  if (n <= 0) throw Error(fmt::format("size '{}' must be positive", text));
  if (n > (INT64_MAX >> shift)) throw Error(fmt::format("size '{}' is too large", text));
  return n << shift;
}

std::string size_label(std::int64_t b) {
  for (auto [shift, unit] : {std::pair{30, "GiB"}, std::pair{20, "MiB"}, std::pair{10, "KiB"}})
    if (b >= (std::int64_t{1} << shift)) {
      const double v = static_cast<double>(b) / static_cast<double>(std::int64_t{1} << shift);
      return v == std::floor(v) ? fmt::format("{}{}", static_cast<std::int64_t>(v), unit) : fmt::format("{:.3g}{}", v, unit);
    }
  return fmt::format("{}B", b);
}

std::vector<std::int64_t> sweep_sizes(const Sweep& s) {
  if (s.min_bytes <= 0 && s.max_bytes <= 0) return {};
  if (s.min_bytes <= 0 || s.max_bytes <= 0) throw Error("-b and -e: give both the smallest and the largest size");
  if (s.min_bytes > s.max_bytes)
    throw Error(fmt::format("-b {} is larger than -e {}", size_label(s.min_bytes), size_label(s.max_bytes)));
  if (s.min_bytes < s.max_bytes && !(s.factor > 1))
    throw Error(fmt::format("-f {}: the factor between sizes must be more than 1", s.factor));
  std::vector<std::int64_t> out;
  for (double b = static_cast<double>(s.min_bytes); b <= static_cast<double>(s.max_bytes) * (1 + 1e-9); b *= s.factor) {
    out.push_back(static_cast<std::int64_t>(std::llround(b)));
    if (s.min_bytes == s.max_bytes) break;
  }
  return out;
}

namespace {

std::int64_t case_size(const Mesh& mesh, const Type& src, const Type& dst) {
  return std::max(src.max_local_bytes(mesh), dst.max_local_bytes(mesh));
}

}  // namespace

std::vector<Case> expand_case(const Case& c, const Sweep& s) {
  const Mesh mesh = Mesh::parse(c.mesh);
  Type src = Type::parse(c.from, mesh), dst = Type::parse(c.to, mesh);
  Case base = c;
  if (s.dtype) {
    src.dtype = dst.dtype = *s.dtype;
    base.from = src.to_string(), base.to = dst.to_string();
  }
  const std::vector<std::int64_t> sizes = sweep_sizes(s);
  if (sizes.empty() || src.rank() == 0) return {base};
  int dim = 0;
  for (int d = 1; d < src.rank(); ++d)
    if (src.dims[d].size > src.dims[dim].size) dim = d;
  // S grows about linearly with the dim's size: scale the dim by the ratio asked for. Ceil blocks
  // make S a staircase, so it lands close, not exactly; every row reports its actual S.
  const std::int64_t n0 = src.dims[dim].size, s0 = case_size(mesh, src, dst);
  std::vector<Case> out;
  for (std::int64_t want : sizes) {
    const double ratio = s0 > 0 ? static_cast<double>(want) / static_cast<double>(s0) : 1.0;
    const std::int64_t n = std::max<std::int64_t>(1, std::llround(static_cast<double>(n0) * ratio));
    src.dims[dim].size = dst.dims[dim].size = n;
    Case k = base;
    k.name = fmt::format("{}@{}", c.name, size_label(want));
    k.from = src.to_string(), k.to = dst.to_string();
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace reshard::bench
