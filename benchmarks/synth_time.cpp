// How long synthesis takes (docs/design.md 3, guarantee 4): median over repetitions, uncached, of
// synthesize() without the exact per-device statistics (what a cache miss costs before the
// plan runs), per public case; then random rank-4 pairs on a 6-axis mesh of 4,096 devices.
// Usage: bench_synth [cases-file] [--reps N]
#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

#include <fmt/format.h>

#include "reshard/cases.hpp"
#include "reshard/synth.hpp"

using namespace reshard;
using Clock = std::chrono::steady_clock;

namespace {

double median_us(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double time_synth_us(const Mesh& m, const Type& a, const Type& b, int reps) {
  SynthOptions o;
  o.exact_stats = false;
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    Plan p = synthesize(m, a, b, o);
    t.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
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

}  // namespace

int main(int argc, char** argv) {
  std::string file = RESHARD_CASES_DIR "/public.txt";
  int reps = 101;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else file = argv[i];
  }
  std::vector<double> medians;
  fmt::print("synthesis time, median of {} uncached runs (exact per-device stats off)\n", reps);
  for (const Case& c : read_cases(file)) {
    Mesh m = Mesh::parse(c.mesh);
    double us = time_synth_us(m, Type::parse(c.from, m), Type::parse(c.to, m), reps);
    medians.push_back(us);
    fmt::print("  {:<22} {:>9.1f} us\n", c.name, us);
  }
  fmt::print("  median over cases: {:.1f} us, max {:.1f} us\n", median_us(medians),
             *std::max_element(medians.begin(), medians.end()));

  Mesh big = Mesh::parse("a=4,b=4,c=4,d=4,e=4,f=4");
  std::mt19937_64 rng(42);
  std::vector<double> big_t;
  for (int i = 0; i < 50; ++i) {
    std::vector<std::int64_t> shape = {4096, 2048, 1024, 512};
    big_t.push_back(time_synth_us(big, random_type(rng, big, shape), random_type(rng, big, shape), 5));
  }
  fmt::print("6-axis mesh of {} devices, 50 random rank-4 pairs: median {:.1f} us, max {:.1f} us\n",
             big.num_devices(), median_us(big_t), *std::max_element(big_t.begin(), big_t.end()));
  return 0;
}
