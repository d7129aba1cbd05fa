#pragma once
// Host kernels for program operations on dense row-major f32 arrays, the deterministic inputs
// of `reshard exec`, the single-process reference, and an in-process run of an assignment over
// every device of the mesh (the oracle the sharding rules are tested against).
#include <cstdint>
#include <vector>

#include "reshard/auto/program.hpp"
#include "reshard/auto/search.hpp"

namespace reshard::automap {

struct Array {
  std::vector<std::int64_t> shape;
  std::vector<float> data;  // row-major, product(shape) elements
};

// The op on local arrays. `out_shape` is the result's (local) shape; throws Error when the
// arguments do not fit the op (wrong ranks, label sizes that differ, element counts).
// Pre: args are the op's arguments in order.
Array run_op(const Operation& op, const std::vector<const Array*>& args, const std::vector<std::int64_t>& out_shape);

// The deterministic value of element `linear` (row-major) of input or param `t`: uniform in
// [-1, 1), parameters scaled by 1/sqrt(their first dim) so that activations stay O(1).
float input_value(const Program& p, int t, std::int64_t linear);
// The values of tensor t over a box of its global indices.
Array fill_box(const Program& p, int t, const Box& box);

// Every tensor's global value, computed in one process (values of unused tensors included).
std::vector<Array> reference(const Program& p);

// Runs the assignment on every device of the mesh in this process: each device computes every op
// on its local blocks; reshards assemble the global value and cut the target blocks (a plain
// oracle, not the synthesizer's plans). Returns each output's global value, assembled from the
// devices' blocks of its output type.
std::vector<Array> run_virtual(const Program& p, const Assignment& a);

// The global value of `type` from every device's local array (a pending sum is reduced), and a
// device's local array of `type` cut from the global value (a pending sum: the group's first
// device holds the value, the others zeros).
Array assemble(const Mesh& m, const Type& type, const std::vector<Array>& locals);
Array cut(const Mesh& m, const Type& type, const Array& global, int device);

// Largest |a - b| over the largest |b| (1 when b is all zeros); throws Error on shape mismatch.
double relative_error(const Array& a, const Array& b);

}  // namespace reshard::automap
