#pragma once
// Internal to the synthesizer: plan synthesis as a bounded best-first search over typed steps.
//
// States are types (size-1 axes stripped); an edge is one step of docs/design.md 3 (slice,
// all_gather, all_to_all, permute, reduce_scatter, all_reduce, make_partial) that
// step_is_valid() accepts and whose output keeps the memory bound. The objective is the cost
// model (estimate_step_s); the search is A* with an admissible estimate of the cost still to
// come, pruned by the cheapest plan known so far (the incumbent), so it only ever returns a
// plan strictly cheaper than the incumbent.
#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "reshard/plan.hpp"
#include "reshard/synth.hpp"

namespace reshard::synth {

struct SearchLimits {
  int max_expansions = 400;  // states taken off the frontier
  int max_depth = 8;         // steps per plan
  // Every step shape (all subsets, placements and orders of axes). Off on large meshes,
  // where only the target-directed moves and single-axis moves are generated.
  bool exhaustive_moves = true;
  // Accept only plans whose workspace (workspace.hpp, MPI rules) keeps `bound` too: a goal
  // reached by a plan that passes it is passed over, so another path may reach it. Needs the
  // exact per-device figures (O(devices) per goal found).
  bool workspace_rule = false;
};

// Limits that keep synthesis within its time budget on `mesh` (docs/design.md 3, guarantee 4).
SearchLimits default_limits(const Mesh& mesh, const Type& src);

// A collective plan from s to t (both without size-1 axes) whose largest local array stays
// within `bound` (and, under limits.workspace_rule, whose workspace does) and whose cost is
// below `incumbent_cost`, or nothing if the search finds none within `limits`. `fallback_cost`:
// the cost of a plan known to keep every bound (the exchange plan), which caps the search for a
// plan within the workspace where the incumbent gives no finite bar. Deterministic: ties are
// broken by the order moves are generated.
std::optional<std::vector<Step>> search_plan(const Mesh& mesh, const Type& s, const Type& t,
                                             std::int64_t bound, const SynthOptions& opts,
                                             double incumbent_cost, const SearchLimits& limits,
                                             double fallback_cost = std::numeric_limits<double>::infinity());

}  // namespace reshard::synth
