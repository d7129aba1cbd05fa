#include <fmt/format.h>

#include "commands.hpp"
#include "reshard/error.hpp"

namespace reshard::cli {

Runner unavailable(CLI::App& app, const char* name, const char* what) {
  CLI::App* sub = app.add_subcommand(name, what);
  sub->allow_extras();
  return [name]() -> int {
    throw Error(fmt::format("'{}' needs the MPI backend, which this build does not have "
                            "(install libopenmpi-dev and reconfigure)", name));
  };
}

}  // namespace reshard::cli
