#pragma once
// Element types of distributed arrays (docs/design.md 2).
#include <cstddef>
#include <optional>
#include <string_view>

#include <fmt/format.h>

namespace reshard {

enum class DType { f64, f32, f16, bf16, i64, i32, i16, i8, u8 };

inline constexpr DType kAllDTypes[] = {DType::f64, DType::f32, DType::f16, DType::bf16, DType::i64,
                                       DType::i32, DType::i16, DType::i8,  DType::u8};

std::size_t size_of(DType t);
std::string_view name_of(DType t);
std::optional<DType> dtype_from_name(std::string_view name);
bool is_float(DType t);

}  // namespace reshard

template <>
struct fmt::formatter<reshard::DType> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(reshard::DType t, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(reshard::name_of(t), ctx);
  }
};
