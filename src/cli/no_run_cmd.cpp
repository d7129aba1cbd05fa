#include "commands.hpp"
namespace reshard::cli {
Runner add_run_command(CLI::App& app) { return unavailable(app, "run", "Execute a plan under mpirun (needs MPI)"); }
}  // namespace reshard::cli
