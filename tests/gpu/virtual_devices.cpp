// Every case of a case file, with all of its mesh's virtual devices on the one GPU: the plans of
// the chosen strategies run on device memory by simulate_on_device (device_sim.hpp) and are
// checked against the index fill after every step. The host simulator runs the same plan as a
// cross-check. One line per case and strategy; a JSON report with --json.
//
//   test_virtual_devices [--cases FILE] [--strategies reshard,naive,greedy_per_axis,exchange]
//                        [--json FILE]
//
// Exit: 0 all passed, 1 some failed, 2 bad arguments, 77 no usable CUDA device (CTest: skipped).
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "device_sim.hpp"
#include "reshard/cases.hpp"
#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/simulate.hpp"
#include "reshard/synth.hpp"

using namespace reshard;

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string cases_file = RESHARD_CASES_DIR "/public.txt", json_file;
  std::vector<std::string> strategies{"reshard", "naive", "greedy_per_axis", "exchange"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cases" && i + 1 < argc) cases_file = argv[++i];
    else if (a == "--strategies" && i + 1 < argc) strategies = split(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_file = argv[++i];
    else {
      std::fprintf(stderr, "usage: test_virtual_devices [--cases FILE] [--strategies LIST] [--json FILE]\n");
      return 2;
    }
  }
  std::string why;
  if (!cuda_device_available(&why)) {
    std::printf("SKIPPED: %s\n", why.c_str());
    return 77;
  }
  std::vector<Case> cases;
  try {
    cases = read_cases(cases_file);
    for (const std::string& s : strategies) strategy_from_name(s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "test_virtual_devices: %s\n", e.what());
    return 2;
  }
  void* stream = stream_create();
  fmt::print("device: {}\n", cuda_device_name(cuda_current_device()));
  fmt::print("{:<22} {:<16} {:>7} {:>5} {:>8} {:>12} {:>9}  {}\n", "case", "strategy", "devices", "steps", "packets",
             "bytes_moved", "ms", "result");
  nlohmann::json rows = nlohmann::json::array();
  int passed = 0, failed = 0;
  for (const Case& c : cases) {
    for (const std::string& s : strategies) {
      nlohmann::json row{{"case", c.name}, {"strategy", s}, {"mesh", c.mesh}, {"from", c.from}, {"to", c.to}};
      std::string result;
      bool ok = false;
      try {
        const Mesh mesh = Mesh::parse(c.mesh);
        SynthOptions o;
        o.strategy = strategy_from_name(s);
        const Plan plan = synthesize(mesh, Type::parse(c.from, mesh), Type::parse(c.to, mesh), o);
        const test::DeviceSimResult r = test::simulate_on_device(plan, stream);
        const SimResult host = simulate(plan);
        ok = r.ok && host.ok;
        result = r.ok ? (host.ok ? "ok" : "FAILED on the host simulator: " + host.error) : "FAILED: " + r.error;
        row["devices"] = mesh.num_devices();
        row["steps"] = plan.steps.size();
        row["packets"] = r.packets;
        row["bytes_moved"] = r.bytes_moved;
        row["seconds"] = r.seconds;
        fmt::print("{:<22} {:<16} {:>7} {:>5} {:>8} {:>12} {:>9.2f}  {}\n", c.name, s, mesh.num_devices(),
                   plan.steps.size(), r.packets, r.bytes_moved, r.seconds * 1e3, result);
      } catch (const std::exception& e) {
        result = fmt::format("FAILED: {}", e.what());
        fmt::print("{:<22} {:<16} {}\n", c.name, s, result);
      }
      row["ok"] = ok;
      row["result"] = result;
      rows.push_back(row);
      (ok ? passed : failed)++;
    }
  }
  stream_destroy(stream);
  fmt::print("virtual devices: {} passed, {} failed ({} cases x {} strategies)\n", passed, failed, cases.size(),
             strategies.size());
  if (!json_file.empty()) {
    nlohmann::json j{{"device", cuda_device_name(cuda_current_device())}, {"cases_file", cases_file},
                     {"passed", passed}, {"failed", failed}, {"rows", rows}};
    std::ofstream(json_file) << j.dump(2) << "\n";
  }
  return failed ? 1 : 0;
}
