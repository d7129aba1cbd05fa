// Property test across ranks: random meshes whose device count divides the rank count (1-3
// axes of sizes 1-4 or the rank count), random types of rank 0-3 with uneven sizes, replication and pending
// reductions, every dtype. Every rank draws the same cases from the same seed (the draws are
// deterministic), so they agree on each plan; RESHARD_SEED and RESHARD_CASES override.
#include <cstdlib>
#include <map>
#include <sstream>

#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "random_types.hpp"

using namespace reshard;

namespace {

std::uint64_t env_or(const char* name, std::uint64_t dflt) {
  const char* v = std::getenv(name);
  return v ? std::strtoull(v, nullptr, 10) : dflt;
}

Mesh random_mesh(test::TypeGen& g, int np) {
  const char* names[] = {"x", "y", "z"};
  for (;;) {
    std::vector<Axis> axes;
    int devices = 1;
    for (int i = 0, n = g.uniform(1, 3); i < n; ++i) {
      // Sizes 1-4, and now and then the rank count itself, so that prime counts (5, 7) get
      // meshes that communicate too.
      axes.push_back({names[i], g.uniform(0, 4) == 0 ? np : g.uniform(1, 4)});
      devices *= axes.back().size;
    }
    if (np % devices == 0) return Mesh(axes);
  }
}

std::vector<std::int64_t> random_shape(test::TypeGen& g) {
  std::vector<std::int64_t> shape;
  std::int64_t elems = 1;
  for (int i = 0, rank = g.uniform(0, 3); i < rank; ++i) {
    // Half even (multiples of 12 split evenly over 1-4), half anything (uneven, empty blocks).
    std::int64_t n = g.uniform(0, 1) ? 12 * g.uniform(1, 2) : g.uniform(1, 13);
    if (elems * n > 1500) n = 1;
    shape.push_back(n);
    elems *= n;
  }
  return shape;
}

test::RandomCase random_case(test::TypeGen& g, int np) {
  test::RandomCase c{random_mesh(g, np), {}, {}};
  auto shape = random_shape(g);
  DType dt = kAllDTypes[g.uniform(0, static_cast<int>(std::size(kAllDTypes)) - 1)];
  ReduceOp ops[] = {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod};
  ReduceOp op = ops[g.uniform(0, 3)];
  // Every dtype with every op, 8- and 16-bit max/min too: the check holds the data to the
  // reduction of the wrapped partials (check_index's source).
  c.src = g.type(c.mesh, dt, shape, op, true);
  c.dst = g.type(c.mesh, dt, shape, op, true);
  return c;
}

// Counts the calls the executor chose (second column of Executor::explain).
void count_modes(const std::string& explained, std::map<std::string, int>& seen) {
  std::istringstream lines(explained);
  std::string line, num, op, mode;
  while (std::getline(lines, line)) {
    std::istringstream(line) >> num >> op >> mode;
    ++seen[mode];
    if (line.find("scratch3") != std::string::npos) ++seen["scratch3"];
    if (line.find("packs") != std::string::npos) ++seen["staged"];
    if (line.find("in place") != std::string::npos) ++seen["in_place"];
  }
}

}  // namespace

TEST_CASE("random cases run across ranks and match the index fill", "[random]") {
  const int np = test::world_size();
  const std::uint64_t seed = env_or("RESHARD_SEED", 20260301);
  const int cases = static_cast<int>(env_or("RESHARD_CASES", 300));
  test::TypeGen gen(seed + static_cast<std::uint64_t>(np));
  int ran = 0;
  std::map<std::string, int> seen;
  for (int i = 0; i < cases; ++i) {
    test::RandomCase c = random_case(gen, np);
    // Every third case moves everything point-to-point: the executor's fallback, and a
    // cross-check of MPI's collectives.
    ExecOptions exec;
    exec.point_to_point_only = i % 3 == 2;
    Context ctx(c.mesh, MPI_COMM_WORLD, {}, exec);
    // Every fourth case also runs the exchange, naive and greedy plans.
    std::vector<Strategy> strategies = {Strategy::reshard};
    if (i % 4 == 0)
      strategies.insert(strategies.end(), {Strategy::exchange, Strategy::naive, Strategy::greedy_per_axis, Strategy::dtensor});
    for (Strategy s : strategies) {
      SynthOptions o;
      o.strategy = s;
      Plan plan = synthesize(c.mesh, c.src, c.dst, o);
      INFO("case " << i << " seed " << seed << " np " << np << " (" << name_of(s)
                    << (exec.point_to_point_only ? ", point-to-point only" : "") << "): " << c.mesh << " | "
                   << c.src << " | " << c.dst << "\n"
                   << fmt::format("{}", plan));
      test::Checked r = test::run_checked(ctx, plan);
      CHECK(r.mismatches == 0);
      CHECK(r.input_intact);
      if (ctx.participates()) count_modes(ctx.executor()->explain(plan), seen);
      ++ran;
    }
  }
  CHECK(ran >= cases);
  if (test::world_rank() == 0) {
    std::string modes;
    for (const auto& [m, n] : seen) modes += fmt::format(" {}={}", m, n);
    WARN("np " << np << ", steps run by call:" << modes);
    // The sweep reaches every call the executor can choose (none silently falls back). Checked
    // for the default draw, whose reach is known; other seeds or counts (RESHARD_SEED,
    // RESHARD_CASES) may miss a rare call by chance, so there a miss is only reported.
    const bool default_draw = !std::getenv("RESHARD_SEED") && !std::getenv("RESHARD_CASES");
    if (np > 1)
      for (const char* m : {"allgatherv", "alltoallv", "alltoall_p2p", "reduce_scatter", "allreduce", "p2p", "p2p_reduce",
                            "local", "in_place"}) {
        INFO("call " << m << " never chosen at np " << np);
        if (default_draw) CHECK(seen[m] > 0);
        else if (seen[m] == 0) WARN("call " << m << " never chosen at np " << np << " with this draw");
      }
  }
}
