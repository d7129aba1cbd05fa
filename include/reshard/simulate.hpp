#pragma once
// The simulator: runs a plan on every device of its mesh in one process with real data, using
// the same routing (route.hpp) and the same host kernels as the backends, and checks after every
// step that each device holds exactly what that step's type says. It is the oracle for tests and
// for `reshard plan --verify`.
#include <cstdint>
#include <string>
#include <vector>

#include "reshard/plan.hpp"

namespace reshard {

struct SimResult {
  bool ok = false;
  std::string error;           // first mismatch, naming step, device and element
  int failed_step = -1;        // -1: none (or the source fill)
  std::int64_t max_local_bytes = 0;            // largest local array any device held
  std::vector<std::int64_t> bytes_recv;        // per device, from other devices, all steps
};

// Fills the source with the index fill (docs/design.md 5), executes every step, and verifies.
SimResult simulate(const Plan& plan);

}  // namespace reshard
