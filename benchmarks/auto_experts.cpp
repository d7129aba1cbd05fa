// Automatic sharding against expert strategies (issue 16): for every example program, the
// predicted time and peak memory of the assignment the search chooses, of the hand-written
// Megatron-LM assignment (<name>.megatron next to the program) and of pure data parallelism,
// with no memory cap and with the cap set to the Megatron assignment's own peak (so that
// replicated weights do not fit). Exits non-zero when the chosen assignment is slower than a
// baseline that fits the same cap.
//
//   bench_auto_experts [DIR] [--topology tp=nvlink,dp=ib] [--mesh dp=2,tp=4]
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <fmt/format.h>

#include "reshard/auto/search.hpp"

namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct Row {
  std::string what;
  std::optional<reshard::automap::Assignment> a;
  std::string error;
};

std::string cell(const Row& r, std::int64_t cap) {
  if (!r.a) return fmt::format("{:>12} {:>12}", "-", r.error.substr(0, 12));
  bool fits = cap <= 0 || r.a->peak_bytes <= cap;
  return fmt::format("{:>12.4g} {:>11}{}", r.a->predicted_time_s, r.a->peak_bytes, fits ? " " : "!");
}

}  // namespace

int main(int argc, char** argv) {
  using namespace reshard;
  using namespace reshard::automap;
  std::filesystem::path dir = RESHARD_PROGRAMS_DIR;
  std::string topology = "tp=nvlink,dp=ib", mesh;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--topology" && i + 1 < argc) topology = argv[++i];
    else if (a == "--mesh" && i + 1 < argc) mesh = argv[++i];
    else dir = a;
  }
  std::vector<std::filesystem::path> progs;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".prog") progs.push_back(e.path());
  std::sort(progs.begin(), progs.end());
  if (progs.empty()) {
    fmt::print(stderr, "bench_auto_experts: no .prog files in {}\n", dir.string());
    return 2;
  }
  int worse = 0;
  fmt::print("topology {}; time = predicted seconds per forward pass, peak = bytes per device ('!': over the cap)\n",
             topology);
  fmt::print("{:<14} {:>10} | {:>12} {:>12} | {:>12} {:>12} | {:>12} {:>12} | {:>8}\n", "program", "cap", "auto time",
             "auto peak", "megatron", "peak", "data-par", "peak", "search s");
  for (const auto& path : progs) {
    try {
      std::optional<Mesh> m;
      if (!mesh.empty()) m = Mesh::parse(mesh);
      Program p = parse_program(slurp(path), m);
      SearchOptions o;
      o.topology = Topology::parse(topology);
      auto megatron_file = std::filesystem::path(path).replace_extension(".megatron");
      Program meg = with_types(p, parse_assignment(slurp(megatron_file), p.mesh));
      Program dp = with_types(p, data_parallel_types(p));
      Assignment meg_free = search(meg, o);
      for (std::int64_t cap : {std::int64_t{0}, meg_free.peak_bytes}) {
        o.memory_limit_bytes = cap;
        auto run = [&](const std::string& what, const Program& q) {
          Row r{what, std::nullopt, ""};
          SearchOptions uncapped = o;
          if (&q != &p) uncapped.memory_limit_bytes = 0;  // a fixed assignment is priced as it is
          try {
            r.a = search(q, uncapped);
          } catch (const Error& e) {
            r.error = e.what();
          }
          return r;
        };
        Row chosen = run("auto", p), mr = run("megatron", meg), dr = run("dp", dp);
        fmt::print("{:<14} {:>10} | {} | {} | {} | {:>8.3f}\n", path.stem().string(), cap ? std::to_string(cap) : "none",
                   cell(chosen, cap), cell(mr, cap), cell(dr, cap), chosen.a ? chosen.a->stats.seconds : 0.0);
        if (!chosen.a) {
          fmt::print("  the search found nothing under the cap: {}\n", chosen.error);
          ++worse;
          continue;
        }
        for (const Row* b : {&mr, &dr}) {
          if (!b->a || (cap > 0 && b->a->peak_bytes > cap)) continue;
          // The same cost model prices both; a relative slack of 1e-9 absorbs summation order.
          if (chosen.a->predicted_time_s > b->a->predicted_time_s * (1 + 1e-9)) {
            fmt::print("  WORSE than {}: {:.6g} s > {:.6g} s\n", b->what, chosen.a->predicted_time_s,
                       b->a->predicted_time_s);
            ++worse;
          }
        }
      }
    } catch (const std::exception& e) {
      fmt::print(stderr, "bench_auto_experts: {}: {}\n", path.string(), e.what());
      return 2;
    }
  }
  if (worse) fmt::print("{} comparison(s) where the search lost to a baseline\n", worse);
  else fmt::print("the chosen assignment is at most as slow as every baseline that fits, on every program\n");
  return worse ? 1 : 0;
}
