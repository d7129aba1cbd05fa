#pragma once
// Sharding rules of the program operations (propagation, as GSPMD and Shardy do it): which
// argument types let an operation run on every device's local blocks with no communication,
// and what type its result then has. A pending sum (`sum{tp}`) flows through operations that
// are linear in it (einsum, add, mul by a whole value, sum, transpose, reshape) and must be
// reduced before non-linear ones (gelu, relu, softmax).
#include <optional>
#include <vector>

#include "reshard/auto/program.hpp"

namespace reshard::automap {

// The rule itself. Pre: args are the op's argument shapes, valid on `mesh`. Returns the
// result's type when running the op on local blocks is exact: every device's local result is
// its block of the result's type (a pending sum included); nullopt otherwise.
std::optional<Type> propagate(const Program& p, const Operation& op, const std::vector<Type>& args);

// One way to run an op: its arguments' types (propagate(args) == out).
struct OpStrategy {
  std::vector<Type> args;
  Type out;
  double flops = 0;  // per device, the busiest one
};

// Candidate strategies for an op whose arguments currently have types `cur` (nullopt: an input
// or param whose type is not chosen yet, so any type is free). einsum: every assignment of mesh
// axes to its labels; other ops: the current types and their reductions (all-reduce,
// reduce-scatter onto each dim), and what makes a softmax dim or a reshape group local.
std::vector<OpStrategy> strategies(const Program& p, const Operation& op, const std::vector<std::optional<Type>>& cur);

// Per-device floating-point work of running `op` on local blocks of `args`.
double op_flops(const Program& p, const Operation& op, const std::vector<Type>& args);

// Ways to make a pending value whole: t itself when it has no reduce clause; otherwise t
// without the clause (all-reduce) and t with the clause's axes appended to one dim
// (reduce-scatter), for every dim that has room.
std::vector<Type> resolutions(const Type& t, const Mesh& mesh);

// Types a free tensor may be given when no rule proposes one: replicated, and each dim split
// over each set of mesh axes (in mesh order) that fits its size.
std::vector<Type> free_types(const Tensor& t, const Mesh& mesh);

// Types a parameter may be stored in when an op needs it as `required`: required itself and
// required with unused mesh axes appended to its largest dim (ZeRO-3 / FSDP: gathered for use).
std::vector<Type> storage_types(const Type& required, const Mesh& mesh);

}  // namespace reshard::automap
