// `reshard auto` (docs/auto.md): choose a type for every tensor of a program and the reshards
// between its operations; print them (readable or JSON).
#include <fmt/format.h>

#include "auto_options.hpp"
#include "commands.hpp"

namespace reshard::cli {

Runner add_auto_command(CLI::App& app) {
  auto args = std::make_shared<AutoArgs>();
  CLI::App* sub = app.add_subcommand("auto", "Choose the sharding of every tensor of a program (automatic sharding)");
  add_auto_options(sub, *args);
  return [args] {
    AutoInputs in = load_auto_inputs(*args);
    automap::Assignment a = automap::search(in.program, in.opts);
    if (args->json) fmt::print("{}\n", assignment_to_json(in.program, a).dump(2));
    else fmt::print("{}", automap::to_string(in.program, a));
    return 0;
  };
}

}  // namespace reshard::cli
