#pragma once
// `plan` and `run` with --to-mesh or --batch (docs/design.md 10): what the two commands hand
// over to the cross-mesh and batched code paths.
#include <cstdint>
#include <string>

namespace reshard::cli {

struct XRunArgs {
  std::string mesh, from, to, to_mesh, batch, fill = "zero", dump;
  std::int64_t memory_cap = 0;
  bool check = false, json = false, verify = false, compare = false;
  int iters = 0;
};

// `plan`: prints the plan (readable or JSON), verifies it on the simulator. Returns the exit code.
int plan_cross(const XRunArgs& a);
// `run` under mpirun: collective over MPI_COMM_WORLD; errors end every rank (MPI_Abort).
int run_cross(const XRunArgs& a, int rank, int size);

}  // namespace reshard::cli
