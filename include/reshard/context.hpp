#pragma once
// The MPI entry point: a Context puts a Mesh over an MPI communicator (MPI_COMM_WORLD or any
// other) and runs plans there. Link reshard::mpi (it brings MPI::MPI_CXX and reshard::reshard).
//
//   MPI_Init(&argc, &argv);
//   reshard::Context ctx(reshard::Mesh::parse("dp=2,tp=4"));          // collective
//   auto src = reshard::Type::parse("f32[1024{dp},512] sum{tp}", ctx.mesh());
//   auto dst = reshard::Type::parse("f32[1024{dp},512{tp}]", ctx.mesh());
//   auto plan = ctx.plan(src, dst);                                   // local, cached
//   std::vector<float> in(ctx.local_elements(src)), out(ctx.local_elements(dst));
//   ctx.reshard(*plan, in.data(), in.size() * 4, out.data(), out.size() * 4);  // collective
//
// Devices are the first mesh.num_devices() ranks of the communicator (rank = device number,
// docs/design.md 1), or the ranks the mesh lists (`tp=2@4,6`: device d on the d-th rank listed);
// the other ranks do not participate: their reshard() and collective calls return at once. A
// mesh with more devices than ranks, or listing a rank the communicator lacks, is a
// MismatchError on every rank.
//
// Collective over every rank of the communicator: the constructor. Collective over the
// participating ranks: reshard(), count_index_mismatches() and the destructor (it frees the
// group communicators). Local: plan(), local_*(), fill_index().
// Thread safety: plan() may be called from any thread (the cache is locked); everything else
// one thread at a time, and only one collective call in flight per Context.
//
// Faults (README "Errors and faults"): every blocking MPI call of a Context has a deadline,
// ExecOptions::timeout_s (default: $RESHARD_TIMEOUT_S, else 300 s). A rank whose peer died or
// is stuck reports the call, the group and the missing ranks, then ends the job (exit code 3).
// MPI_THREAD_FUNNELED is enough; with MPI_THREAD_MULTIPLE (MPI_Init_thread) the watchdog thread
// can also name the ranks that never reached a collective and call MPI_Abort.
#include <cstddef>
#include <cstdint>
#include <memory>

#include <mpi.h>

#include "reshard/comm.hpp"
#include "reshard/executor.hpp"
#include "reshard/synth.hpp"

namespace reshard {

class Context {
 public:
  // Pre: MPI is initialised. Collective over `comm`. Throws MismatchError on every rank when
  // the mesh has more devices than `comm` has ranks or ranks pass different meshes.
  explicit Context(const Mesh& mesh, MPI_Comm comm = MPI_COMM_WORLD, SynthOptions opts = {},
                   ExecOptions exec = {});
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  const Mesh& mesh() const { return mesh_; }
  bool participates() const { return device_ >= 0; }
  int device() const { return device_; }  // -1 on ranks outside the mesh
  // The participating ranks (rank = device number), MPI_COMM_NULL elsewhere. Owned by the
  // Context; error handler MPI_ERRORS_RETURN.
  MPI_Comm comm() const;

  // A plan from the cache (synthesized on first use with the Context's options). Local.
  std::shared_ptr<const Plan> plan(const Type& src, const Type& dst);
  const SynthOptions& synth_options() const { return opts_; }

  // This rank's block of `type`. On ranks outside the mesh: a box of empty intervals (for a
  // rank-0 type that is a box without dims; go by local_elements(), which is 0 there).
  Box local_block(const Type& type) const;
  std::int64_t local_elements(const Type& type) const;
  std::int64_t local_bytes(const Type& type) const;

  // Runs the plan on this rank's buffers (Executor::execute). Collective over participants.
  // With ExecOptions::memory = Memory::device they are device pointers, staged through pinned
  // host memory for MPI; fill_index() and count_index_mismatches() always take host memory.
  void reshard(const Plan& plan, const void* in, std::size_t in_bytes, void* out, std::size_t out_bytes);

  // The index fill (docs/design.md 5) of this rank's shard of `type`. Local.
  void fill_index(const Type& type, void* local) const;
  // Elements of `type`, over all participants, that differ from the index fill's logical
  // values; a pending reduction is first reduced over its group in group order (as the
  // simulator does). `source`: the index-filled type the data came from, when not `type`
  // (check_index: its reduce clause decides the logical values). Collective over
  // participants; 0 on ranks outside the mesh.
  std::int64_t count_index_mismatches(const Type& type, const void* local, std::size_t bytes,
                                      const Type* source = nullptr);

  // The plan cache (limit: PlanCache::set_limit_bytes). Local.
  PlanCache& plan_cache() { return plans_; }
  // Null on ranks outside the mesh.
  Executor* executor() { return exec_.get(); }
  Communicator* communicator() { return comm_.get(); }

 private:
  Mesh mesh_;
  SynthOptions opts_;
  int device_ = -1;
  PlanCache plans_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<Executor> exec_;
};

}  // namespace reshard
