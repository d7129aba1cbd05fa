#pragma once
// The search for a sharding of every tensor of a program (docs/auto.md): a beam search in
// program order with propagation. At each operation every surviving partial assignment is
// extended by each candidate strategy of the operation (rules.hpp); the reshards that bring its
// arguments to the strategy's types are planned by the synthesizer and priced by its cost model;
// partial assignments that leave the same live tensors in the same types are merged, keeping the
// fastest and the leanest; then the beam keeps the fastest ones and the leanest ones that can
// still fit the memory cap.
//
// Cost, per device: compute (FLOPs of the busiest device over `flops_per_s`) plus the predicted
// time of every reshard (estimate_plan_s with the per-axis topology); peak memory: parameters,
// plus at each operation the activations live at once, the resharded copies of its arguments
// and its result.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "reshard/auto/program.hpp"
#include "reshard/error.hpp"
#include "reshard/plan.hpp"
#include "reshard/synth.hpp"

namespace reshard::automap {

struct SearchOptions {
  double flops_per_s = 1e13;           // per device
  Topology topology;                   // per-axis links for reshard costs
  std::int64_t memory_limit_bytes = 0;  // 0: no cap
  int beam_width = 48;
};

// A reshard the assignment inserts: `tensor` goes from `from` to `to` before operation `op`
// (op == -1: at the end, to make an output whole).
struct ReshardChoice {
  int op = -1;
  int tensor = -1;
  Type from, to;
  std::shared_ptr<const Plan> plan;
  double time_s = 0;
};

struct OpChoice {
  std::vector<Type> args;  // the types the op's arguments are brought to
  Type out;                // the type its result has (before any fixed type's reshard)
  double compute_s = 0;
};

struct SearchStats {
  std::int64_t states_expanded = 0;   // partial assignments extended
  std::int64_t candidates = 0;        // (state, strategy, storage) combinations priced
  std::int64_t merged = 0;            // candidates merged into an equal frontier
  std::int64_t plans_synthesized = 0;  // distinct reshards planned
  std::int64_t strategies = 0;        // distinct op strategies generated
  double seconds = 0;
  int beam_width = 0;
};

struct Assignment {
  std::vector<Type> types;  // per tensor: as stored (inputs, params) or after its op (values)
  std::vector<OpChoice> ops;
  std::vector<ReshardChoice> reshards;  // in execution order
  std::vector<Type> output_types;       // per program output: whole (no reduce clause)
  double predicted_time_s = 0, compute_s = 0, comm_s = 0;
  std::int64_t peak_bytes = 0;   // per device, max over devices
  std::int64_t param_bytes = 0;  // parameters as stored, per device
  std::int64_t memory_limit_bytes = 0;
  SearchStats stats;
};

// No assignment fits under the memory cap; says by how much the leanest one found exceeds it.
class NoFitError : public Error {
 public:
  NoFitError(const std::string& what, std::int64_t best_peak, std::int64_t limit)
      : Error(what), best_peak_bytes(best_peak), limit_bytes(limit) {}
  std::int64_t best_peak_bytes, limit_bytes;
};

// Chooses every tensor's type. Tensors with a fixed type keep it. Throws NoFitError.
Assignment search(const Program& p, const SearchOptions& opts = {});

// A hand-written assignment: `name : TYPE` lines (`#` comments) fixing tensors' types.
std::vector<std::pair<std::string, Type>> parse_assignment(std::string_view text, const Mesh& mesh);
// The program with those tensors' types fixed (throws Error on unknown names or wrong shapes).
Program with_types(const Program& p, const std::vector<std::pair<std::string, Type>>& types);
// Pure data parallelism: every input and value split on dim 0 over all mesh axes (when it has
// room), parameters replicated.
std::vector<std::pair<std::string, Type>> data_parallel_types(const Program& p);

// Readable summary: types, reshards, times, memory, what the search explored.
std::string to_string(const Program& p, const Assignment& a);

}  // namespace reshard::automap
