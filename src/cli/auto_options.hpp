#pragma once
// Options shared by `reshard auto` and `reshard exec`: the program, the mesh, the cost model,
// the memory cap, and an optional hand-written assignment; and the JSON form of the result.
#include <cctype>
#include <fstream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "plan_json.hpp"
#include "reshard/auto/search.hpp"
#include "reshard/error.hpp"

namespace reshard::cli {

struct AutoArgs {
  std::string program, mesh, topology, memory, assign;
  double flops = 1e13;
  int beam = 48;
  bool json = false;
};

inline void add_auto_options(CLI::App* sub, AutoArgs& a) {
  sub->add_option("--program", a.program, "Program file (docs/auto.md)")->required();
  sub->add_option("--mesh", a.mesh, "Device mesh, overriding the program's `mesh` statement");
  sub->add_option("--topology", a.topology, "Per-axis links, e.g. tp=nvlink,dp=ib");
  sub->add_option("--memory", a.memory, "Cap on peak bytes per device, e.g. 67108864 or 64MiB");
  sub->add_option("--flops", a.flops, "Compute rate per device, FLOP/s (default 1e13)");
  sub->add_option("--beam", a.beam, "Beam width of the search (default 48)");
  sub->add_option("--assign", a.assign, "File of `name : type` lines fixing tensors' types (a hand-written assignment)");
  sub->add_flag("--json", a.json, "Print one JSON object");
}

inline std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(fmt::format("cannot read {} '{}'", what, path));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// `123`, `64MiB`, `1.5GB`, `512k`: bytes (K/M/G are powers of 1000, KiB/MiB/GiB of 1024).
inline std::int64_t parse_bytes(const std::string& text) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    throw Error(fmt::format("--memory '{}': expected a number of bytes, e.g. 67108864 or 64MiB", text));
  }
  std::string unit = text.substr(used);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb") mult = 1e3;
  else if (unit == "m" || unit == "mb") mult = 1e6;
  else if (unit == "g" || unit == "gb") mult = 1e9;
  else if (unit == "kib") mult = 1024.0;
  else if (unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "gib") mult = 1024.0 * 1024 * 1024;
  if (mult == 0) throw Error(fmt::format("--memory '{}': unknown unit '{}' (B, KB, MB, GB, KiB, MiB, GiB)", text, unit));
  if (!(v > 0) || v * mult > 9.0e18) throw Error(fmt::format("--memory '{}' must be positive and below 9e18", text));
  return static_cast<std::int64_t>(v * mult);
}

struct AutoInputs {
  automap::Program program;
  automap::SearchOptions opts;
};

inline AutoInputs load_auto_inputs(const AutoArgs& a) {
  AutoInputs in;
  std::optional<Mesh> mesh;
  if (!a.mesh.empty()) mesh = Mesh::parse(a.mesh);
  in.program = automap::parse_program(read_text_file(a.program, "program"), mesh);
  if (!a.assign.empty())
    in.program = automap::with_types(
        in.program, automap::parse_assignment(read_text_file(a.assign, "assignment"), in.program.mesh));
  if (!a.topology.empty()) in.opts.topology = Topology::parse(a.topology);
  if (!a.memory.empty()) in.opts.memory_limit_bytes = parse_bytes(a.memory);
  if (!(a.flops > 0)) throw Error("--flops must be positive");
  if (a.beam < 1 || a.beam > 100000) throw Error("--beam must be between 1 and 100000");
  in.opts.flops_per_s = a.flops;
  in.opts.beam_width = a.beam;
  return in;
}

// The JSON contract of `reshard auto --json` (docs/auto.md), plus compute/communication split
// and what the search explored.
inline nlohmann::json assignment_to_json(const automap::Program& p, const automap::Assignment& a) {
  nlohmann::json types = nlohmann::json::object();
  for (std::size_t t = 0; t < p.tensors.size(); ++t) types[p.tensors[t].name] = a.types[t].to_string();
  nlohmann::json outputs = nlohmann::json::object();
  for (std::size_t j = 0; j < p.outputs.size(); ++j) outputs[p.tensors[p.outputs[j]].name] = a.output_types[j].to_string();
  nlohmann::json reshards = nlohmann::json::array();
  for (const automap::ReshardChoice& r : a.reshards) {
    nlohmann::json steps = plan_to_json(*r.plan)["steps"];
    for (auto& s : steps) s.erase("bytes_recv");  // symbolic plans carry no exact figures
    reshards.push_back({{"tensor", p.tensors[r.tensor].name},
                        {"from", r.from.to_string()},
                        {"to", r.to.to_string()},
                        {"steps", steps},
                        {"before", r.op < 0 ? std::string("output") : p.tensors[p.ops[r.op].out].name},
                        {"line", r.op < 0 ? 0 : p.ops[r.op].line},
                        {"time_s", r.time_s}});
  }
  return {{"mesh", p.mesh.to_string()},
          {"types", types},
          {"output_types", outputs},
          {"reshards", reshards},
          {"predicted_time_s", a.predicted_time_s},
          {"compute_s", a.compute_s},
          {"communication_s", a.comm_s},
          {"peak_bytes", a.peak_bytes},
          {"param_bytes", a.param_bytes},
          {"memory_limit_bytes", a.memory_limit_bytes > 0 ? nlohmann::json(a.memory_limit_bytes) : nlohmann::json()},
          {"explored",
           {{"states_expanded", a.stats.states_expanded},
            {"candidates", a.stats.candidates},
            {"merged", a.stats.merged},
            {"strategies", a.stats.strategies},
            {"plans_synthesized", a.stats.plans_synthesized},
            {"beam_width", a.stats.beam_width},
            {"seconds", a.stats.seconds}}}};
}

}  // namespace reshard::cli
