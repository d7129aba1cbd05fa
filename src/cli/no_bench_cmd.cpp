#include "commands.hpp"
namespace reshard::cli {
Runner add_bench_command(CLI::App& app) { return unavailable(app, "bench", "Benchmark strategies under mpirun (needs MPI)"); }
}  // namespace reshard::cli
