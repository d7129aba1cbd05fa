#pragma once
// The four guarantees of docs/design.md 3, checked on one plan (shared by the suite and property tests).
#include <algorithm>

#include <catch2/catch.hpp>

#include "reshard/route.hpp"
#include "reshard/simulate.hpp"
#include "reshard/synth.hpp"

namespace reshard::test {

// Holds `plan` to: a consistent chain of valid steps, correct on the simulator, within the
// memory bound, and no more bytes than the naive plan unless at the lower bound.
// `bounded`: false for the naive plan, which materialises the global array by design.
inline void check_guarantees(const Plan& plan, const Plan& naive, bool bounded = true) {
  INFO(fmt::format("{}", plan));
  const Mesh& m = plan.mesh;
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    std::string why;
    REQUIRE(plan.type_after(static_cast<int>(i) - 1) == plan.steps[i].in);
    INFO("step " << i + 1);
    REQUIRE(step_is_valid(m, plan.steps[i], &why));
  }
  REQUIRE((plan.steps.empty() ? plan.src : plan.steps.back().out) == plan.dst);
  SimResult sim = simulate(plan);
  INFO(sim.error);
  REQUIRE(sim.ok);
  std::int64_t bound = std::max(plan.stats.src_local_bytes, plan.stats.dst_local_bytes);
  if (bounded) {
    CHECK(plan.stats.max_intermediate_bytes <= bound);
    CHECK(sim.max_local_bytes <= bound);
  }
  // The simulator's count of bytes moved agrees with the plan's figures.
  CHECK(*std::max_element(sim.bytes_recv.begin(), sim.bytes_recv.end()) == plan.stats.bytes_recv_max);
  if (plan.stats.lower_bound_bytes >= 0) {
    CHECK(plan.stats.bytes_recv_max >= plan.stats.lower_bound_bytes);
    if (plan.stats.bytes_recv_max > plan.stats.lower_bound_bytes)
      CHECK(plan.stats.bytes_recv_max <= naive.stats.bytes_recv_max);
    // A plan of one data movement is exact: it moves only what is missing.
    auto moves = std::count_if(plan.steps.begin(), plan.steps.end(), [](const Step& s) { return s.communicates(); });
    if (moves == 1 && plan.steps.size() == 1) CHECK(plan.stats.bytes_recv_max == plan.stats.lower_bound_bytes);
  }
}

}  // namespace reshard::test
