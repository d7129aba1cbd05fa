#pragma once
// The size sweep of `reshard bench -b MIN -e MAX -f FACTOR [-d DTYPE]`, as nccl-tests sweeps:
// every case of the suite at sizes MIN, MIN*FACTOR, ... up to MAX, each made by scaling the case
// along its largest dim so that its per-rank size S (bandwidth.hpp) comes close to the size
// asked for. Pure: no MPI.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reshard/cases.hpp"
#include "reshard/dtype.hpp"

namespace reshard::bench {

// "64M", "1K", "4096", "2GiB", "512B": bytes, K/M/G as powers of 1024 (nccl-tests' reading).
// Throws Error naming the text when it is not a positive size.
std::int64_t parse_size(std::string_view text);
// "1 KiB", "64 MiB": the inverse, for case names.
std::string size_label(std::int64_t bytes);

struct Sweep {
  std::int64_t min_bytes = 0, max_bytes = 0;  // 0, 0: no sweep (the suite's own sizes)
  double factor = 2;                          // > 1 unless min == max
  std::optional<DType> dtype;                 // every case's element type, when set
};

// The sizes of the sweep: min, min*factor, ... while <= max (at least min). Throws Error on a
// factor <= 1 with min < max, or min > max.
std::vector<std::int64_t> sweep_sizes(const Sweep& s);

// `c` with its element type replaced (when asked) and, for a sweep, one case per size, named
// "<name>@<size>"; the largest dim (the first of the largest) is scaled in both types alike.
// A case of rank 0 (a scalar) cannot be scaled and is returned once. Pre: c's mesh and types
// parse and fit each other.
std::vector<Case> expand_case(const Case& c, const Sweep& s);

}  // namespace reshard::bench
