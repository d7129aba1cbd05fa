#pragma once
// The executor's workspace, as a pure function of the plan (no communicator): what
// Executor::workspace_bytes() reports on each device, so that a plan can state it before it
// runs (PlanStats::workspace_bytes) and tests can hold the two to each other.
//
// Per device the executor holds (docs/stats.md):
// - the scratch slots of buffer_plan() (1 and 2), each sized to the largest intermediate this
//   device keeps there;
// - staging for the steps that pack or unpack, placed in whatever slot the step neither reads
//   nor writes when it fits there (the caller's output buffer included), else in one dedicated
//   staging buffer sized to the largest step's leftover.
// Which steps stage depends on the transport: MPI moves strided boxes in place (derived
// datatypes), so only Allgatherv of a strided box and reductions whose shares are not laid out
// in group order pack; a transport without that packs every strided box.
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "reshard/plan.hpp"
#include "reshard/route.hpp"

namespace reshard {

// What the executor's staging decisions depend on besides the plan.
struct StagingRules {
  bool moves_boxes = true;  // the transport moves strided boxes in place (MPI: yes; NCCL: no)
  bool p2p_only = false;    // ExecOptions::point_to_point_only
  bool operator==(const StagingRules&) const = default;
};

// Staging of one step on one device, in elements.
struct StepStaging {
  std::int64_t send = 0, recv = 0;
  bool operator==(const StepStaging&) const = default;
};

// Slots as the executor numbers them: the caller's input, its output (0), scratch 1 and 2,
// and the dedicated staging buffer.
inline constexpr int kInputSlot = -1;
inline constexpr int kStagingSlot = -2;
inline constexpr int kNumSlots = 3;

// Where one step's send or receive staging lives: a byte offset into a slot or into the
// dedicated staging buffer.
struct StagingPlace {
  int slot = kStagingSlot;
  std::int64_t offset = 0;
};

// Places each step's staging (bytes) in a slot the step neither reads (in_slot) nor writes
// (out_slot) where it fits in `capacity` (bytes per slot; [0] is this device's output),
// else in the dedicated buffer. Fills send_at/recv_at (one per step) when given; returns the
// dedicated buffer's size. Pre: in_slot, out_slot and staging have one entry per step.
std::int64_t place_staging(const std::vector<int>& in_slot, const std::vector<int>& out_slot,
                           const std::int64_t (&capacity)[kNumSlots], const std::vector<StepStaging>& staging_bytes,
                           std::vector<StagingPlace>* send_at = nullptr, std::vector<StagingPlace>* recv_at = nullptr);

// The group-wide choices of prepare_step (src/exec/step_prepare.cpp), made here so that the
// executor and this model take them alike.
// Allgatherv fits when every member (`members` in group order, `routes` theirs) sends one box
// to every member (or nothing) and every member receives every box in place; fills each
// member's box. Groups above kMaxCheckedGroup are not checked (routing them all costs
// O(group^2)) and take Alltoallv.
inline constexpr std::size_t kMaxCheckedGroup = 256;
bool allgather_fits(const Mesh& mesh, const Step& step, const std::vector<int>& members,
                    const std::vector<DeviceRoute>& routes, std::vector<Box>& contrib);
// Reduce_scatter and Allreduce fit when every member holds `in_block` (then each sends every
// receiver the same share); Allreduce also needs out-block = in-block.
bool reduction_fits(const Mesh& mesh, const Step& step, const std::vector<int>& members, const Box& in_block);

// Reduce-scatter rounds. A reduce-scatter whose shares are not laid out back to back in group
// order packs them; packed whole that is the whole in-block, which with the plan's scratch can
// pass the memory bound (rs_then_move). So it packs in rounds instead: slabs of whole rows of
// the in-block along its outermost dim of extent > 1, as many rows per round as `budget`
// elements hold (at least one), one reduce-scatter call per round. Every member holds the same
// in-block and the budget is the plan's, so every member makes the same calls.
inline constexpr std::int64_t kNoBudget = -1;  // one round, whatever it packs
struct RsRounds {
  int dim = -1;                 // the dim the slabs cut (-1: one round, the whole in-block)
  std::vector<Interval> slabs;  // global index ranges along `dim`, in order
  Box slab(const Box& in_block, std::size_t j) const;  // the in-block restricted to slab j
  std::size_t size() const { return dim < 0 ? 1 : slabs.size(); }
};
RsRounds rs_rounds(const Box& in_block, std::int64_t budget_elems);
// Elements the largest round packs: the members' shares (in-block and out-block intersected,
// in group order) within each slab.
std::int64_t rs_round_pack(const RsRounds& r, const Box& in_block, const std::vector<Box>& shares);
// The budget a plan's reduce-scatters pack within, in bytes: the memory bound (largest source
// or target shard) less both scratch slots at their largest (BufferPlan), so that scratch and
// staging together stay within the bound on every device. Never below 0.
std::int64_t staging_budget_bytes(const Plan& plan);

// The reference: staging of `step` on `device` as prepare_step decides it, from this device's
// route and, for the group-wide choices (Allgatherv, reduction fits), the routes of its whole
// group. O(group^2) for all-gathers, O(group) otherwise.
// `budget_elems`: staging_budget_bytes() of the plan, in elements (reduce-scatter rounds).
StepStaging device_step_staging(const Mesh& mesh, const Step& step, int device, const StagingRules& rules = {},
                                std::int64_t budget_elems = kNoBudget);

// Staging of `step` on every member of one group (`members` in group order), with the
// group-wide choices made once: what the class computation routes per class of groups.
std::vector<StepStaging> group_step_staging(const Mesh& mesh, const Step& step, const std::vector<int>& members,
                                            const StagingRules& rules = {}, std::int64_t budget_elems = kNoBudget);

// Workspace bytes the executor allocates on `device` for `plan`, from device_step_staging():
// the brute-force reference. O(steps * group^2).
std::int64_t device_workspace_bytes(const Plan& plan, int device, const StagingRules& rules = {});

// Local bytes of `t` on every device (index: device number). O(devices * rank).
std::vector<std::int64_t> local_bytes_per_device(const Type& t, const Mesh& mesh);

// Workspace bytes on every device (index: device number), by classes: the groups of a step
// whose members' blocks are translates of each other stage alike, so one group of each class
// is routed (docs/stats.md). Equal to device_workspace_bytes() on every device.
std::vector<std::int64_t> workspace_per_device(const Plan& plan, const StagingRules& rules = {});

}  // namespace reshard

template <>
struct fmt::formatter<reshard::StepStaging> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(const reshard::StepStaging& s, Ctx& ctx) const {
    return fmt::format_to(ctx.out(), "send {} recv {}", s.send, s.recv);
  }
};
