#pragma once
// One step of a plan as this device executes it: the transfers of route.hpp turned into
// buffer offsets, the collective chosen for it, and where packing is needed. Built once per
// plan (prepare_step) and run on every call (run_step).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "reshard/comm.hpp"
#include "reshard/device_kernels.hpp"
#include "reshard/plan.hpp"

namespace reshard::exec {

using Shape = std::vector<std::int64_t>;

// How a step moves its data (executor.hpp says which op gets which).
enum class Mode { local, allgatherv, alltoallv, reduce_scatter, allreduce, p2p, p2p_reduce };
// alltoallv and p2p steps whose boxes the transport moves in place (Group::prepare_boxes) keep
// their mode and run `boxes` instead of packing.
std::string_view name_of(Mode m);

// One box moved by this device. `in_off` locates it in the input block (sends, self),
// `out_off` in the output block (receives, self). `at` is its element offset in the buffer it
// travels from or to: the input or output array when it is contiguous there, else staging.
struct Xfer {
  int peer = 0;        // rank in the step's group; -1 for this device itself
  Shape extent, in_off, out_off;
  std::int64_t count = 0;
  std::int64_t at = 0;
};

// One reduce-scatter call of a reduce_scatter step (rs_rounds in workspace.hpp): its counts by
// group rank, where this device's result lands (`recv_at`: in the out-block, or at 0 in receive
// staging), and the copies around it (packs into send staging, unpacks from receive staging).
struct RsRound {
  std::vector<std::int64_t> counts;
  std::int64_t recv_at = 0;
  std::vector<BoxCopy> before, after;
  DeviceCopyBatch before_batch, after_batch;
};

struct StepExec {
  Mode mode = Mode::local;
  Group* group = nullptr;  // the step's group (world for point-to-point)
  DType dtype = DType::f32;
  ReduceOp op = ReduceOp::none;  // the reduction of reducing steps
  Shape in_shape, out_shape;     // this device's blocks
  std::vector<Xfer> sends, recvs;  // with other devices, in group order
  std::vector<Xfer> self;          // at most one box this device keeps (reduce fallback: none)
  // Reduce fallback: every contribution in group order, this device's own (peer -1) included.
  std::vector<Xfer> reduce_order;
  bool stage_sends = false, stage_recvs = false;
  std::int64_t send_stage = 0, recv_stage = 0;  // staging elements
  // Collective arguments, by group rank.
  std::vector<Segment> send_segs, recv_segs;
  std::vector<RsRound> rounds;  // reduce_scatter: one call each, in order
  std::int64_t count = 0, send_at = 0;  // allgatherv: this device's box; allreduce: elements
  bool send_direct = false;             // allgatherv / reduce_scatter: send from the input
  bool fill_identity = false;           // make_partial on a non-lead device
  std::unique_ptr<BoxTransfer> boxes;   // alltoallv / p2p moved in place: no staging
  // The box copies around the collective, over numbered buffers (list_copies in
  // step_prepare.cpp): `before` reads
  // buffer 0 = the in-block and writes 0 = send staging (packs) or 1 = the out-block (the box
  // this device keeps); `after` reads 0 = receive staging and writes 0 = the out-block (unpacks).
  std::vector<BoxCopy> before, after;
  // Device execution: the local work runs as CUDA kernels on `stream` (set by the executor),
  // each side of the collective as one launch.
  bool device = false;
  void* stream = nullptr;
  DeviceCopyBatch before_batch, after_batch;
};

// Pre: the step is valid on `mesh`. Collective over all devices: creates group communicators
// (none when `p2p_only`: every step then runs point-to-point).
// `budget_elems`: what a reduce-scatter may pack per round (staging_budget_bytes() of the plan,
// in elements; kNoBudget: one round).
StepExec prepare_step(Communicator& comm, const Step& step, bool p2p_only, std::int64_t budget_elems);

// Device execution on `stream`: builds the step's copy batches (one kernel launch per side).
void prepare_device(StepExec& s, void* stream);

// Runs the step: reads `in` (this device's in-block), writes `out` (its out-block), packs
// into `send_stage` (send_stage elements) and receives into `recv_stage` (recv_stage elements).
void run_step(const StepExec& s, const std::byte* in, std::byte* out, std::byte* send_stage, std::byte* recv_stage);

}  // namespace reshard::exec

template <>
struct fmt::formatter<reshard::exec::Mode> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(reshard::exec::Mode m, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(reshard::exec::name_of(m), ctx);
  }
};
