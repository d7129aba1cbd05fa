// `reshard`: plan, run and benchmark resharding from the command line (docs/design.md 5).
#include <cstdio>

#include <fmt/format.h>

#include "commands.hpp"
#include "reshard/error.hpp"
#include "reshard/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"reshard: type-directed resharding of distributed arrays"};
  app.set_version_flag("--version", fmt::format("reshard {}", reshard::version), "Print the version and exit");
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, reshard::cli::Runner>> cmds;
  auto add = [&](reshard::cli::Runner r) { cmds.emplace_back(app.get_subcommands({}).back(), std::move(r)); };
  add(reshard::cli::add_plan_command(app));
  add(reshard::cli::add_run_command(app));
  add(reshard::cli::add_bench_command(app));
  add(reshard::cli::add_auto_command(app));
  add(reshard::cli::add_exec_command(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : cmds)
      if (sub->parsed()) return run();
  } catch (const reshard::Error& e) {
    fmt::print(stderr, "reshard: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "reshard: internal error: {}\n", e.what());
    return 3;
  }
  return 1;
}
