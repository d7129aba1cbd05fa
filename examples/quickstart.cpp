// quickstart: the shortest complete reshard program. A 16 x 12 matrix split by rows over every
// rank becomes the same matrix split by columns (one all-to-all), and every rank checks its part.
//
//   mpirun -np 4 build/bin/quickstart
#include <cstdint>
#include <cstdio>
#include <exception>

#include <mpi.h>

#include "reshard/dist_array.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int ranks = 1, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  long long bad = 0;
  try {
    reshard::Context ctx(reshard::Mesh::parse(fmt::format("x={}", ranks)));  // collective
    auto rows = reshard::Type::parse("f32[16{x}, 12]", ctx.mesh());           // split by rows
    auto cols = reshard::Type::parse("f32[16, 12{x}]", ctx.mesh());           // split by columns

    // Element (i, j) of the global matrix is 100 i + j; this rank fills the block it holds.
    reshard::DistArray<float> a(ctx, rows);
    reshard::Box box = a.block();
    std::size_t k = 0;
    for (auto i = box.dims[0].lo; i < box.dims[0].hi; ++i)
      for (auto j = box.dims[1].lo; j < box.dims[1].hi; ++j) a.local()[k++] = float(100 * i + j);

    reshard::DistArray<float> b = a.reshard_to(cols);  // collective

    box = b.block();
    k = 0;
    for (auto i = box.dims[0].lo; i < box.dims[0].hi; ++i)
      for (auto j = box.dims[1].lo; j < box.dims[1].hi; ++j) bad += b.local()[k++] != float(100 * i + j);
    MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);

    if (me == 0)
      fmt::print("{}{} -> {} on mesh {}: {} elements checked on {} rank(s), {} wrong\n",
                 *ctx.plan(rows, cols), rows, cols, ctx.mesh(), rows.global_elements(), ranks, bad);
  } catch (const std::exception& e) {  // reshard reports errors as exceptions naming the problem
    std::fprintf(stderr, "rank %d: %s\n", me, e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return bad == 0 ? 0 : 1;
}
