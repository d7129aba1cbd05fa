// `reshard plan --to-mesh M2` and `reshard plan --batch FILE` (docs/design.md 10): plan, print,
// and with --verify run the plan on the cross-mesh simulator.
#include <fmt/format.h>

#include "xcommands.hpp"
#include "xplan_json.hpp"

namespace reshard::cli {

int plan_cross(const XRunArgs& a) {
  XInputs in = x_inputs(a.mesh, a.from, a.to, a.to_mesh, a.batch);
  const XOptions opts = x_options(a.memory_cap);
  XPlan plan = plan_batch(in.src_mesh, in.dst_mesh, in.arrays, opts);
  XSimResult sim;
  if (a.verify) sim = simulate_batch(plan);
  if (a.json) {
    nlohmann::json j = xplan_to_json(plan, in.batch);
    if (a.verify) {
      // Byte counts delivered by the simulator must be the plan's (they are the same messages).
      j["verified"] = sim.ok && sim.bytes_recv == plan.stats.bytes_recv;
      if (!sim.ok) j["verify_error"] = sim.error;
    }
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("{}", to_string(plan));
    if (a.verify) fmt::print("  verified on the simulator: {}\n", sim.ok ? "yes" : "NO: " + sim.error);
  }
  if (a.verify && !sim.ok) {
    fmt::print(stderr, "reshard plan: verification failed: {}\n", sim.error);
    return 1;
  }
  return 0;
}

}  // namespace reshard::cli
