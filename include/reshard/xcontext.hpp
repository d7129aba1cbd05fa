#pragma once
// Cross-mesh, batched and asynchronous resharding over MPI (docs/batched.md). An XContext puts
// a source mesh and a target mesh on one communicator (each may sit on chosen ranks,
// `dp=2,tp=2@0-3` and `tp=2@4,6`; equal, overlapping or disjoint) and runs XPlans there.
//
//   reshard::XContext x(Mesh::parse("dp=2,tp=2@0-3"), Mesh::parse("r=2,tp=2@4-7"));  // collective
//   auto plan = x.plan({{"w", src_type, dst_type}, ...});           // local, cached
//   x.reshard(*plan, {{in, in_bytes}}, {{out, out_bytes}});           // collective over the world
//   auto h = x.reshard_async(*plan, ins, outs);  ...compute...  h.wait();
//
// Every world rank calls reshard(): ranks on neither mesh pass no data and return at once
// after the agreement check. Buffers: one per array, this rank's shard of the array's source
// type (empty where the rank is not on the source mesh) and of its target type.
//
// How data moves: per phase of the plan (bucket, round), MPI_Isend/MPI_Irecv on a duplicate
// of the communicator. A piece of at least XOptions::direct_min_bytes travels alone, straight
// from the source shard into the target shard (a derived datatype where the box is strided);
// the smaller pieces of a pair of ranks share one message (every array's boxes), packed into
// and unpacked from two staging slots, so that bucket k+1 is packed while bucket k is on the
// wire. What a call needs (datatypes, copies, staging) is prepared on a plan's first call. A
// pending reduction in a source is first removed on the source mesh by an ordinary plan.
//
// Asynchronous: reshard_async() checks, removes pending reductions and posts the first phase,
// then returns an XHandle; test() advances it without blocking (unpacks what arrived, posts
// the next phase), wait() finishes it. MPI progresses the messages inside those calls (Open
// MPI over shared memory copies in MPI_Test*), so a loop that computes calls test() between
// chunks of work. Several handles may be in flight on one XContext (each call has its own
// message tag); every rank must start them in the same order and keep the buffers alive and
// untouched until they complete. Dropping an unfinished handle waits for it.
//
// Errors: buffer sizes, a plan that differs between ranks or meshes that do not fit the
// communicator are MismatchError on every rank before anything moves (nothing is written).
// That check is one small all-reduce per call; with ExecOptions::check_every_call false (as
// for Context) only a plan's first call makes it, and later bad buffers throw on their rank.
// A peer that never sends: past ExecOptions::timeout_s the rank names the phase and the peers
// it waited for (receiving and sending) and ends the job (MPI_Abort, exit code 3). The time
// counts while the rank polls: a gap of more than half the timeout between two test() calls
// (a long computation) restarts it, since the rank's own side did not progress meanwhile.
// Thread safety: one thread at a time per XContext.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include <mpi.h>

#include "reshard/context.hpp"
#include "reshard/xplan.hpp"

namespace reshard {

struct ConstBuffer {
  const void* data = nullptr;
  std::size_t bytes = 0;
};
struct MutBuffer {
  void* data = nullptr;
  std::size_t bytes = 0;
};

class XContext;

// One reshard in flight. Move-only; the XContext must outlive it.
class XHandle {
 public:
  XHandle() = default;
  XHandle(XHandle&&) noexcept;
  XHandle& operator=(XHandle&&) noexcept;
  ~XHandle();  // waits for an unfinished reshard
  // Advances without blocking; true once every message has arrived and been unpacked.
  bool test();
  // Blocks until done (with the deadline of ExecOptions::timeout_s).
  void wait();
  bool done() const;

  struct State;

 private:
  friend class XContext;
  explicit XHandle(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

class XContext {
 public:
  // Pre: MPI is initialised. Collective over `comm`. Throws MismatchError on every rank when a
  // mesh lists a rank the communicator lacks or ranks pass different meshes.
  XContext(const Mesh& src_mesh, const Mesh& dst_mesh, MPI_Comm comm = MPI_COMM_WORLD, XOptions opts = {},
           ExecOptions exec = {});
  ~XContext();
  XContext(const XContext&) = delete;
  XContext& operator=(const XContext&) = delete;

  const Mesh& src_mesh() const { return src_mesh_; }
  const Mesh& dst_mesh() const { return dst_mesh_; }
  int rank() const { return rank_; }
  const XOptions& options() const { return opts_; }
  const ExecOptions& exec_options() const { return exec_; }
  int src_device() const { return src_mesh_.device_of(rank_); }  // -1: not on the source mesh
  int dst_device() const { return dst_mesh_.device_of(rank_); }
  // Contexts of each mesh (for fill and check of its types, or ordinary plans on one mesh).
  Context& src_context() { return *src_; }
  Context& dst_context() { return *dst_; }

  // A plan from the cache (planned on first use with the XContext's options). Local.
  std::shared_ptr<const XPlan> plan(const std::vector<XArray>& arrays);
  std::shared_ptr<const XPlan> plan(const Type& src, const Type& dst) { return plan({XArray{"", src, dst}}); }

  // Runs the plan. Collective over every rank of the communicator. `caller_error`: a problem
  // the caller found on this rank alone (an array of the wrong kind, say); it joins the
  // agreement, so that every rank throws MismatchError instead of the others waiting.
  void reshard(const XPlan& plan, std::span<const ConstBuffer> in, std::span<const MutBuffer> out,
               std::string_view caller_error = {});
  XHandle reshard_async(const XPlan& plan, std::span<const ConstBuffer> in, std::span<const MutBuffer> out,
                        std::string_view caller_error = {});

  // Bytes of staging this rank allocated (max held at once), and of the buffers of `pre`.
  std::int64_t workspace_peak_bytes() const { return peak_; }
  std::int64_t pre_workspace_bytes() const { return pre_bytes_; }
  // Elements of array `a`'s target shards, over all world ranks, that differ from the index
  // fill of its source (docs/design.md section 5). Collective over the communicator.
  std::int64_t count_index_mismatches(const XArray& a, const void* local, std::size_t bytes);

  struct Prepared;  // per plan: this rank's messages, staging, mid buffers

 private:
  Prepared& prepare(const XPlan& plan);
  friend struct XHandle::State;
  void hold(std::int64_t bytes);

  Mesh src_mesh_, dst_mesh_;
  XOptions opts_;
  ExecOptions exec_;
  double timeout_s_ = 0;
  MPI_Comm comm_ = MPI_COMM_NULL;  // duplicate, MPI_ERRORS_RETURN
  int rank_ = 0, size_ = 0;
  std::unique_ptr<Context> src_, dst_;
  std::vector<std::unique_ptr<Prepared>> prepared_;  // found by comparing plans
  std::vector<std::pair<std::vector<XArray>, std::shared_ptr<const XPlan>>> plans_;
  std::int64_t held_ = 0, peak_ = 0, pre_bytes_ = 0;
  int seq_ = 0;  // calls so far: their message tags
};

}  // namespace reshard
