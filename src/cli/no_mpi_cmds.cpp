// Built when there is no MPI: `run` and `bench` exist but say why they cannot work.
#include <fmt/format.h>

#include "commands.hpp"
#include "reshard/error.hpp"

namespace reshard::cli {

namespace {
Runner unavailable(CLI::App& app, const char* name, const char* what) {
  CLI::App* sub = app.add_subcommand(name, what);
  sub->allow_extras();
  return [name]() -> int { throw Error(fmt::format("'{}' needs MPI; this build has none (install libopenmpi-dev)", name)); };
}
}  // namespace

Runner add_run_command(CLI::App& app) { return unavailable(app, "run", "Execute a plan under mpirun (needs MPI)"); }
Runner add_bench_command(CLI::App& app) { return unavailable(app, "bench", "Benchmark strategies under mpirun (needs MPI)"); }

}  // namespace reshard::cli
