#pragma once
// Subcommands of the `reshard` tool. Each file adds its subcommand to the app and returns the
// function to run when it is chosen (returning the process exit code).
#include <functional>

#include <CLI/CLI.hpp>

namespace reshard::cli {

using Runner = std::function<int()>;

Runner add_plan_command(CLI::App& app);
// Present when built with MPI (src/exec); the tool says so otherwise.
Runner add_run_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
// Automatic sharding (docs/auto.md): `auto` plans a program; `exec` runs it (needs MPI).
Runner add_auto_command(CLI::App& app);
Runner add_exec_command(CLI::App& app);
// A subcommand that exists but fails with a message saying why (missing backend).
Runner unavailable(CLI::App& app, const char* name, const char* what);

}  // namespace reshard::cli
