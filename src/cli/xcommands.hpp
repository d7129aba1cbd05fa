#pragma once
// `plan` and `run` with --to-mesh or --batch (docs/design.md 10): what the two commands hand
// over to the cross-mesh and batched code paths.
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>

namespace reshard::cli {

struct XRunArgs {
  std::string mesh, from, to, to_mesh, batch, fill = "zero", dump;
  std::int64_t memory_cap = 0;
  bool check = false, json = false, verify = false, compare = false;
  int iters = 0;
};

// --to-mesh, --batch and --memory-cap, the same on `plan` and `run`.
inline void add_cross_mesh_options(CLI::App* sub, XRunArgs& x) {
  sub->add_option("--to-mesh", x.to_mesh, "Target mesh of a cross-mesh plan, e.g. tp=2@4,6");
  sub->add_option("--batch", x.batch, "Case file: one array a line, all on the same pair of meshes");
  sub->add_option("--memory-cap", x.memory_cap, "Workspace cap in bytes for --to-mesh/--batch");
}

// `plan`: prints the plan (readable or JSON), verifies it on the simulator. Returns the exit code.
int plan_cross(const XRunArgs& a);
// `run` under mpirun: collective over MPI_COMM_WORLD; errors end every rank (MPI_Abort).
int run_cross(const XRunArgs& a, int rank, int size);

}  // namespace reshard::cli
