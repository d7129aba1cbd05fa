#pragma once
// Helpers for the MPI tests: world rank and size, and one checked execution of a plan.
#include <cstddef>
#include <vector>

#include <mpi.h>

#include "reshard/context.hpp"

namespace reshard::test {

inline int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}
inline int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

struct Checked {
  std::int64_t mismatches = 0;  // over all participating ranks
  bool input_intact = true;     // this rank's input buffer after execute
};

// Index fill, execute, check (collective over the context's participants).
inline Checked run_checked(Context& ctx, const Plan& plan) {
  std::vector<std::byte> in(static_cast<std::size_t>(ctx.local_bytes(plan.src)));
  std::vector<std::byte> out(static_cast<std::size_t>(ctx.local_bytes(plan.dst)));
  ctx.fill_index(plan.src, in.data());
  const std::vector<std::byte> before = in;
  ctx.reshard(plan, in.data(), in.size(), out.data(), out.size());
  Checked c;
  c.input_intact = in == before;
  c.mismatches = ctx.count_index_mismatches(plan.dst, out.data(), out.size(), &plan.src);
  return c;
}

}  // namespace reshard::test
