#pragma once
// The simulator (src/sim/simulate.cpp) on one GPU: every virtual device of a plan's mesh keeps
// its local array in device memory. Each step packs what every device sends with the CUDA box
// copy (one packet per route.hpp transfer, in the sender's order), moves each packet to its
// receiver with one cudaMemcpyAsync device-to-device, and unpacks it there with the CUDA box
// copy or reduction (reductions in group order, as the simulator and the backends do);
// make_partial's identity fill is the CUDA fill. After the source fill and after every step,
// every device's array is checked against the index fill on the device (device_check_index;
// pending reductions are first reduced over their group on the device, in group order).
#include <cstdint>
#include <string>

#include "reshard/plan.hpp"

namespace reshard::test {

struct DeviceSimResult {
  bool ok = false;
  std::string error;       // the first mismatch, naming step and device
  int failed_step = -1;    // -1: none, or the source fill
  std::int64_t bytes_moved = 0;  // device-to-device bytes between distinct virtual devices
  std::int64_t packets = 0;      // transfers (self included)
  double seconds = 0;            // wall time of the whole run, checks included
};

// Pre: a CUDA device is current. `stream` is a cudaStream_t (nullptr: the default stream).
DeviceSimResult simulate_on_device(const Plan& plan, void* stream);

}  // namespace reshard::test
