#pragma once
// The executor: runs a Plan on one device's local buffers over a communicator backend
// (comm.hpp). Each step moves exactly the transfers route.hpp defines, with one collective
// call chosen per step:
//
//   all_gather      Allgatherv when every member sends one box to all and receives in place
//                   (checked on every member's route, groups up to 256), else Alltoallv
//   all_to_all      Alltoallv
//   reduce_scatter  Reduce_scatter when all members hold the same block, else point-to-point
//                   and a reduction in group order
//   all_reduce      Allreduce, same fallback
//   permute,
//   exchange        sparse point-to-point (only the peers that exchange data)
//   slice, local    one local box copy (make_partial: the identity on non-lead devices)
//
// Boxes contiguous in the input are sent straight from it and boxes contiguous in the output
// land in place; others are packed or unpacked through staging. Transfers to oneself are one
// box copy. The caller's input is never written. Workspace: BufferPlan's scratch slots (plus
// one where this device's uneven output is smaller than an intermediate BufferPlan puts in
// it), and staging, which goes into whichever buffer is idle during the step (the caller's
// output included) before a staging buffer of its own. Prepared once per plan and kept for
// later calls (cached by the plan's fingerprint, least recently used out beyond
// ExecOptions::prepared_cache_bytes); the buffers are one pool shared by every plan, grown to
// the largest need, so a loop over many shapes holds the largest plan's workspace, not the sum.
//
// Device buffers (ExecOptions::memory): the same plans, steps and staging choices, with the
// local work as CUDA kernels on a stream and the workspace in device memory.
//
// Collective: execute() is collective over every device of the communicator's mesh; all must
// pass the same plan (checked, see below). Thread safety: none; one thread at a time.
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>

#include "reshard/comm.hpp"
#include "reshard/plan.hpp"

namespace reshard {

struct ExecOptions {
  // Before any data moves, every call checks with one small all-reduce that all devices run
  // the same plan with buffers of the right sizes (a mismatch throws on every device instead
  // of hanging). false: only the first call of each plan checks the plan, and buffer sizes
  // are checked locally (a wrong size then throws on that device only).
  bool check_every_call = true;
  // Move every step with point-to-point messages (Isend/Irecv, reductions done locally in
  // group order) instead of the collective chosen per op: slower; for cross-checking an MPI
  // library's collectives and for debugging. All devices must agree on it (checked).
  bool point_to_point_only = false;
  // Deadline, in seconds, of every blocking wait of the MPI backend (a collective; a
  // point-to-point round in which no message completes), applied by Context. When it passes,
  // the rank prints what it waited for, on which group, and which peers had not arrived, then
  // ends the whole job (exit code 3; MPI_Abort): a dead or stuck peer never hangs the others.
  // < 0: $RESHARD_TIMEOUT_S if set, else 300. 0: wait forever. README "Errors and faults".
  double timeout_s = -1;
  // Where the caller's buffers live. device: the local work (self copies, pack and unpack,
  // reductions, make_partial's identity fill) runs as CUDA kernels (device_kernels.hpp) on
  // `stream`, and the workspace is device memory (cudaMalloc, once per plan). With a device
  // backend (NCCL) the messages stay on the device; a host backend (MPI) stages each message
  // through pinned host memory (cudaMallocHost, grown on demand and kept). Needs a CUDA build;
  // in and out must then be device pointers. A device backend needs Memory::device.
  Memory memory = Memory::host;
  // Device execution: the cudaStream_t everything is enqueued on. nullptr: the communicator's
  // stream (Communicator::stream(); the legacy default stream for MPI). With NCCL it must be
  // the communicator's own stream (or nullptr).
  void* stream = nullptr;
  // Device execution: execute() waits for its work before returning (Communicator::synchronize,
  // which for NCCL checks for asynchronous errors with a timeout). false: it returns once the
  // work is enqueued on the stream; later work on that stream is ordered after it, and the
  // caller synchronizes before reading the output elsewhere.
  bool synchronize = true;
  // Bytes of prepared state (each plan's routes, collective arguments and MPI datatypes, as
  // charged by a figure every device computes alike) kept for later calls; beyond it the least
  // recently used plans are dropped and prepared again when they come back. Their workspace is
  // not counted here: it is one pool shared by all plans, as large as the largest plan needs.
  // The default holds thousands of everyday plans (a few KiB each).
  std::int64_t prepared_cache_bytes = std::int64_t{64} << 20;
};

class Executor {
 public:
  // Throws Error when the options do not fit the communicator or the build (Memory::device
  // without CUDA, host memory on a device backend, a stream other than NCCL's). Local.
  explicit Executor(Communicator& comm, ExecOptions opts = {});
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Runs `plan` (on comm.mesh()): `in` holds this device's source shard (in_bytes must be
  // plan.src.local_bytes), `out` receives its target shard (out_bytes must be
  // plan.dst.local_bytes). Pre: in and out do not overlap. Throws MismatchError on every
  // device, before any data moves, when devices disagree on the plan or any buffer size is
  // wrong. An error after data started moving (a failing MPI call) throws on the devices
  // that see it; the others may then wait: callers should MPI_Abort on it (the CLI does), or
  // the others' deadline (ExecOptions::timeout_s) ends the job.
  //
  // What an error leaves behind: `in` is never written, on any path (it holds the same bytes
  // after a throw). `out` is untouched when the error is found before data moves (every
  // MismatchError above: plan or size disagreement, null or overlapping buffers); after data
  // started moving (an MPI error, an exception in step k) its contents are unspecified: steps
  // before k may have written intermediates or part of the result into it. A timeout or a
  // dead peer ends the process (MPI_Abort), so nothing is left to inspect.
  void execute(const Plan& plan, const void* in, std::size_t in_bytes, void* out, std::size_t out_bytes);
  void execute(const std::shared_ptr<const Plan>& plan, const void* in, std::size_t in_bytes,
               void* out, std::size_t out_bytes) {
    execute(*plan, in, in_bytes, out, out_bytes);
  }

  // Workspace bytes `plan` needs on this device (scratch and staging; 0 before its first
  // execute or after its prepared state was dropped). Plans share one pool of workspace.
  std::int64_t workspace_bytes(const Plan& plan) const;
  // Bytes the shared workspace pool holds now: per buffer, the most any prepared plan needed.
  std::int64_t workspace_held_bytes() const;
  // High-water mark of workspace bytes held at once, over all plans, since construction or
  // release_workspace().
  std::int64_t workspace_peak_bytes() const { return peak_; }
  // Frees the workspace pool and every plan's prepared state (rebuilt on the next execute).
  void release_workspace();
  // The prepared-state cache (ExecOptions::prepared_cache_bytes): bytes charged now, plans
  // held, plans dropped so far; a new limit drops plans at once. Every device must set the same.
  std::int64_t prepared_cache_bytes() const { return state_bytes_; }
  std::size_t prepared_plans() const { return prepared_.size(); }
  std::int64_t prepared_evictions() const { return evictions_; }
  void set_prepared_cache_bytes(std::int64_t limit);
  // How this device runs each step of `plan`, one line per step: the call chosen (allgatherv,
  // alltoallv, alltoall_p2p, reduce_scatter, allreduce, p2p, p2p_reduce or local), what is staged, and
  // which buffers it reads and writes. Empty before the plan's first execute. Local.
  std::string explain(const Plan& plan) const;

  Communicator& communicator() const { return comm_; }

  struct Prepared;  // per plan: routes, collective choices, buffers (src/exec)

 private:
  struct Pool;      // the workspace every plan shares (calls never overlap)
  Prepared& prepare(const Plan& plan, const std::string& key);
  void fit_pool(const Prepared& p);
  void evict_to(std::int64_t limit);
  std::string key_of(const Plan& plan) const;  // plan_fingerprint and the options that matter

  // What moves the data: comm_ itself, or staged_ for device buffers on a host backend.
  Communicator& transport() { return staged_ ? *staged_ : comm_; }

  Communicator& comm_;
  ExecOptions opts_;
  std::map<std::string, std::unique_ptr<Prepared>> prepared_;  // by plan fingerprint text
  std::list<std::string> lru_;  // keys of prepared_, most recently used first
  std::int64_t state_bytes_ = 0, evictions_ = 0;
  std::unique_ptr<Pool> pool_;
  // The plans of recent calls with what each call needs of them, most recent first: a loop
  // that runs the same few plans finds them by comparing plans, without formatting or hashing
  // the fingerprint again.
  struct Recent {
    Plan plan;
    std::string key;      // key_of(plan)
    std::uint64_t hash;   // fnv1a(key), what the agreement check compares
    std::string summary;  // what the agreement check names
  };
  std::vector<Recent> recent_;
  const Recent& recent(const Plan& plan);
  std::int64_t peak_ = 0;
  std::unique_ptr<Communicator> staged_;  // device buffers over a host backend (pinned staging)
};

// Fingerprint text of a plan: mesh, types, strategy and every step. Devices that agree on it
// move the same data in the same collectives.
std::string plan_fingerprint(const Plan& plan);

}  // namespace reshard
