// The MPI backend's reductions against the host kernels' reduce_into (the simulator's
// arithmetic): every dtype and op, on values that overflow narrow integers (they must wrap,
// as C++ unsigned arithmetic does, never saturate).
#include <random>

#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "reshard/kernels.hpp"

using namespace reshard;

namespace {

// Rank r's contribution: pseudo-random values spanning each dtype's range (integer-valued
// and small for the float types, so that any order of summation is exact: bf16 holds integers
// up to 256 exactly, and 8 ranks of values below 16 stay under that).
std::vector<std::byte> values(DType t, int rank, std::int64_t n) {
  std::vector<std::byte> v(static_cast<std::size_t>(n) * size_of(t));
  std::mt19937_64 rng(1234 + rank);
  for (std::int64_t k = 0; k < n; ++k) {
    auto bits = static_cast<std::int64_t>(rng());
    double x = is_float(t) ? static_cast<double>(bits % 16) : static_cast<double>(bits % 100000);
    store_as(v.data(), k, t, x);
  }
  return v;
}

}  // namespace

TEST_CASE("MPI reductions agree with the host kernels for every dtype and op", "[backend]") {
  const int np = test::world_size();
  Context ctx(Mesh({{"x", np}}));
  Group& world = ctx.communicator()->world();
  const std::int64_t n = 1000;
  for (DType t : kAllDTypes)
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod}) {
      if (is_float(t) && op == ReduceOp::prod) continue;  // products of 64 values overflow f16
      std::vector<std::byte> expect = values(t, 0, n);
      for (int r = 1; r < np; ++r) reduce_into(expect.data(), values(t, r, n).data(), n, t, op);
      std::vector<std::byte> mine = values(t, world.rank(), n), got(mine.size());
      world.allreduce(mine.data(), got.data(), n, t, op);
      std::int64_t bad = 0;
      for (std::int64_t k = 0; k < n; ++k) bad += load_as(got.data(), k, t) != load_as(expect.data(), k, t);
      INFO(name_of(t) << " " << name_of(op));
      CHECK(bad == 0);
    }
}
