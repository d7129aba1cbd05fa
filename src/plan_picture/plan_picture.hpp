#pragma once
// Pictures of a plan, like jax.debug.visualize_array_sharding or DTensor's visualize_sharding,
// but for every step: which block of the global array each device holds before the plan and
// after each step, and the bytes each step moves. Pure (no MPI, no GPU): built from the types
// and the plan's figures alone.
//
// Arrays of rank 1 and 2 are drawn as they are; higher ranks are projected on the two largest
// dims that any type of the plan splits (further dims fill in with the largest remaining ones),
// so devices that differ only in a dim not shown share a rectangle, and say so.
#include <cstdint>
#include <string>
#include <vector>

#include "reshard/plan.hpp"

namespace reshard::picture {

// One block of the shown dims and the devices holding it (several when replicated, or when they
// differ only in dims not shown). `box` has one interval per shown dim.
struct Holding {
  Box box;
  std::vector<int> devices;  // ascending
};

// The array after `step` (0: the source; k: after step k of the plan).
struct Frame {
  int step = 0;
  std::string label;  // "source", or "1. slice {x}"
  Type type;
  std::vector<Holding> blocks;  // non-empty blocks, by their first device
  std::vector<int> empty;       // devices that hold nothing (uneven sizes)
  std::int64_t recv_max_bytes = 0;  // the step: max over devices of bytes received (PlanStats)
};

struct View {
  std::string mesh;
  int devices = 0;
  std::vector<int> dims;             // shown global dims (0, 1 or 2 of them), rows first
  std::vector<std::int64_t> extent;  // their global sizes
  std::vector<Frame> frames;         // source, then one per step
};

// Pre: plan's types are valid on plan.mesh and plan.stats is filled (synthesize/analyze).
// Cost: one block per device and type.
View view_of(const Plan& plan);

// The picture as text: per frame a character map of the shown dims (one letter per block, at
// most max_rows x max_cols cells) and a legend of the blocks and their holders. Throws Error
// when a frame has more blocks than there are letters (62): use to_svg for large meshes.
std::string to_text(const View& view, int max_rows = 16, int max_cols = 48);

// A standalone SVG: one panel per frame, blocks coloured by their first holder and labelled
// with their holders, each panel titled with its type and the bytes its step moved.
std::string to_svg(const View& view);

}  // namespace reshard::picture
