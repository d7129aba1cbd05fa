#pragma once
// Routing: what each device sends and receives in one step. This is the single definition of
// a step's data movement; the simulator and every backend execute exactly these transfers.
//
// Non-reducing steps: the group of device d is the devices that agree with d outside
// step.axes. d needs its out-block; each distinct in-block of the group that meets it is
// taken from d itself when d holds it, otherwise from one holder chosen so that receivers
// that need the same data spread over the holders (the permute of docs/design.md 9).
// Reducing steps: every group member sends its in-block cut to d's out-block, d's own share
// included, and d reduces them in group order.
#include <cstdint>
#include <string>
#include <vector>

#include "reshard/plan.hpp"

namespace reshard {

struct Transfer {
  int peer = 0;  // global device number of the other side (may be the device itself)
  Box box;       // global indices moved
};

struct DeviceRoute {
  std::vector<Transfer> sends;  // ordered by the receiver's position in the group
  std::vector<Transfer> recvs;  // ordered by the sender's position in the group
};

// Devices of `device`'s group over `axes`, ordered by the mixed-radix number of their
// coordinates on `axes` (first axis major).
std::vector<int> group_of(const Mesh& mesh, const std::vector<std::string>& axes, int device);

DeviceRoute route(const Mesh& mesh, const Step& step, int device);

// Staging a device needs for one step, beyond its input and output arrays: sends are packed
// unless every box sent is contiguous in the input (and, for reduce_scatter, laid out in group
// order); receives land in place unless some box received is not contiguous in the output.
struct Staging {
  std::int64_t send_bytes = 0, recv_bytes = 0;
};
Staging staging_of(const Mesh& mesh, const Step& step, const DeviceRoute& r, int device);

// Whether a box (global indices) is one contiguous run of the dense row-major array that
// holds `block`.
bool contiguous_in(const Box& box, const Box& block);
// Element offset of the box's first element in the dense row-major array that holds `block`.
// Pre: box within block (same rank).
std::int64_t linear_offset(const Box& box, const Box& block);

// Whether every device's out-block is covered by what the route delivers (the step is
// executable as written). Symbolic and per dim; cheap. Sets `why` when it is not.
bool step_is_valid(const Mesh& mesh, const Step& step, std::string* why = nullptr);

}  // namespace reshard
