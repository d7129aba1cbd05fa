// How long synthesis takes (docs/design.md 3, guarantee 4): median over repetitions, uncached,
// of synthesize() without the exact per-device statistics (what a cache miss costs before the
// plan runs), per case of a case file; then random rank-4 pairs on a 6-axis mesh of 4,096
// devices and on an 8-axis mesh of 65,536 devices.
// Usage: bench_synth [CASES] [--reps N] [--big-pairs N] [--clock wall|cpu]   (bench_synth --help)
#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "reshard/cases.hpp"
#include "reshard/error.hpp"
#include "reshard/synth.hpp"

using namespace reshard;
using Clock = std::chrono::steady_clock;

namespace {

double median_us(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Wall-clock time, or this thread's CPU time: on a machine shared with other work the wall
// clock counts the time the thread waited for a core, which says nothing about synthesis.
bool g_cpu_clock = false;

double now_us() {
  if (g_cpu_clock) {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) * 1e-3;
  }
  return std::chrono::duration<double, std::micro>(Clock::now().time_since_epoch()).count();
}

double time_synth_us(const Mesh& m, const Type& a, const Type& b, int reps) {
  SynthOptions o;
  o.exact_stats = false;
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    double t0 = now_us();
    Plan p = synthesize(m, a, b, o);
    t.push_back(now_us() - t0);
    if (p.steps.size() > 1000) fmt::print("");  // keep the result alive
  }
  return median_us(t);
}

Type random_type(std::mt19937_64& rng, const Mesh& m, const std::vector<std::int64_t>& shape) {
  Type t;
  t.dtype = DType::f32;
  for (auto n : shape) t.dims.push_back({n, {}});
  std::vector<int> order(m.num_axes());
  for (int i = 0; i < m.num_axes(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (int a : order) {
    int where = std::uniform_int_distribution<int>(-1, static_cast<int>(shape.size()) - 1)(rng);
    if (where >= 0) t.dims[where].axes.push_back(m.axes()[a].name);
  }
  return t;
}

void big_mesh(const char* text, int pairs, int reps) {
  Mesh big = Mesh::parse(text);
  std::mt19937_64 rng(42);
  std::vector<double> t;
  for (int i = 0; i < pairs; ++i) {
    std::vector<std::int64_t> shape = {4096, 2048, 1024, 512};
    t.push_back(time_synth_us(big, random_type(rng, big, shape), random_type(rng, big, shape), reps));
  }
  fmt::print("{}-axis mesh of {} devices, {} random rank-4 pairs: median {:.1f} us, max {:.1f} us\n",
             big.num_axes(), big.num_devices(), pairs, median_us(t), *std::max_element(t.begin(), t.end()));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_synth: synthesis time per case (median of uncached runs, exact per-device stats off)"};
  std::string file = RESHARD_CASES_DIR "/public.txt";
  int reps = 101, pairs = 50;
  app.add_option("cases", file, "case file (name | mesh | from | to per line)")->check(CLI::ExistingFile);
  app.add_option("--reps", reps, "uncached runs per case; the median is reported")->check(CLI::Range(1, 1000000));
  app.add_option("--big-pairs", pairs, "random pairs on each large mesh (0: skip them)")->check(CLI::Range(0, 100000));
  std::string clock = "wall";
  app.add_option("--clock", clock, "wall (elapsed) or cpu (this thread's CPU time, for a loaded machine)")
      ->check(CLI::IsMember({"wall", "cpu"}));
  CLI11_PARSE(app, argc, argv);
  g_cpu_clock = clock == "cpu";
  try {
    std::vector<Case> cases = read_cases(file);
    if (cases.empty()) throw Error(fmt::format("{}: no cases in the file", file));
    std::vector<double> medians;
    fmt::print("synthesis time ({} clock), median of {} uncached runs (exact per-device stats off)\n", clock, reps);
    for (const Case& c : cases) {
      Mesh m = Mesh::parse(c.mesh);
      double us = time_synth_us(m, Type::parse(c.from, m), Type::parse(c.to, m), reps);
      medians.push_back(us);
      fmt::print("  {:<22} {:>9.1f} us\n", c.name, us);
    }
    fmt::print("  median over cases: {:.1f} us, max {:.1f} us\n", median_us(medians),
               *std::max_element(medians.begin(), medians.end()));
    if (pairs > 0) {
      big_mesh("a=4,b=4,c=4,d=4,e=4,f=4", pairs, 5);
      big_mesh("a=4,b=4,c=4,d=4,e=4,f=4,g=4,h=4", pairs, 3);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_synth: {}\n", e.what());
    return 1;
  }
  return 0;
}
