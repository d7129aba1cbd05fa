#pragma once
// Cross-mesh and batched plans (docs/batched.md): N arrays, each with a source type on mesh A
// and a target type on mesh B, over one communicator ("the world"). A and B may sit on the
// same ranks, on overlapping ranks or on disjoint ranks (`Mesh::ranks()`); A == B is a batch
// on one mesh. Planning is pure (no MPI): the executor (xcontext.hpp) and the simulator
// (simulate_batch) run the same plan.
//
// What a plan guarantees (checked by tests against simulate_batch, thousands of random cases):
//  1. correct: after it runs, every world rank on mesh B holds exactly its target shard of
//     every array (a target with a pending reduction: the group's first member holds the
//     value, the others the identity, as `local make_partial` does);
//  2. byte-minimal: every world rank receives exactly the bytes of its target shards that its
//     own source shards do not hold, each byte once (a pending reduction in the source is first
//     removed on mesh A by an ordinary plan, `pre`; its bytes are counted separately);
//  3. spread: a block held by several source ranks (replication) is sent by the least loaded
//     of them; a piece many target ranks need (replicated target) goes direct or through a
//     broadcast tree (receivers relay it in later rounds), whichever the cost model prefers;
//  4. memory: no rank holds more than its source and target shards plus the workspace
//     (pack and unpack staging, double-buffered); with a memory cap, moves are split into
//     buckets (pieces cut into slabs where needed) so that the workspace stays within it.
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "reshard/mesh.hpp"
#include "reshard/plan.hpp"
#include "reshard/synth.hpp"
#include "reshard/type.hpp"

namespace reshard {

// One array of a batch: its source type on the source mesh, its target type on the target mesh.
struct XArray {
  std::string name;
  Type src, dst;
  bool operator==(const XArray&) const = default;
};

// One box of one array moving from world rank `from` to world rank `to` (`from == to`: a local
// copy from the rank's source shard into its target shard). `relay`: the sender forwards what
// it received in an earlier round (it reads its target shard, not its source shard).
struct XMove {
  int array = 0;
  int from = 0, to = 0;
  Box box;  // global indices
  int bucket = 0, round = 0;
  bool relay = false;
  bool operator==(const XMove&) const = default;
};

struct XOptions {
  // Bytes of workspace per rank the executor may allocate (0: no cap). Moves are bucketed so
  // that two buckets in flight (one packing, one on the wire) fit in it. Must leave room for
  // one element per peer (Error otherwise).
  std::int64_t memory_cap = 0;
  // Link figures for the cost model's choice between direct sends and a broadcast tree.
  Link link;
  // Options of the `pre` plans that remove a pending reduction on the source mesh.
  SynthOptions synth;
  // false: never relay (every receiver is served by a holder of the source block).
  bool allow_tree = true;
  // A move of at least this many bytes travels as a message of its own, in place on both
  // sides (no staging; a strided box as a derived datatype); smaller ones share one packed
  // message per peer (docs/batched.md, plans, item 5): for a large piece the copies saved are
  // worth more than the message added, for small ones the message costs more.
  std::int64_t direct_min_bytes = 16384;
};

// Exact figures over world ranks.
struct XStats {
  std::vector<std::int64_t> bytes_recv;    // per world rank, all arrays, from other ranks
  std::vector<std::int64_t> lower_bound;   // per world rank: target bytes its source does not hold
  std::vector<std::int64_t> bytes_sent;    // per world rank
  std::vector<std::int64_t> workspace;     // per world rank: staging bytes (two buckets in flight)
  std::vector<std::int64_t> calls;         // per world rank: messages posted (sends + receives)
  std::vector<std::int64_t> array_bytes_recv_max;   // per array: max over ranks
  std::vector<std::int64_t> array_lower_bound_max;  // per array: max over ranks
  std::int64_t bytes_recv_max = 0, lower_bound_bytes = 0, workspace_bytes = 0, calls_max = 0;
  std::int64_t pre_bytes_recv_max = 0;     // received by the `pre` plans (pending reductions)
  std::int64_t src_local_bytes = 0, dst_local_bytes = 0;  // largest shard of one array, max over arrays
  double est_time_s = 0;
};

struct XPlan {
  Mesh src_mesh, dst_mesh;
  int world = 0;  // ranks the communicator needs: max(src_mesh, dst_mesh).ranks_needed()
  std::vector<XArray> arrays;
  // Per array: the plan on src_mesh from its source to `mid` (no pending reduction), empty
  // steps when the source has none; and `mid` itself, what the moves read.
  std::vector<Plan> pre;
  std::vector<Type> mid;
  std::vector<XMove> moves;  // sorted by (bucket, round, from, to, array)
  int buckets = 0, rounds = 0;
  std::int64_t memory_cap = 0;
  std::int64_t direct_min_bytes = 16384;  // XOptions::direct_min_bytes (xplan_detail.hpp)
  std::vector<std::string> notes;
  XStats stats;
  bool cross_mesh() const { return !(src_mesh == dst_mesh); }
};

// Checks one array's pair: types valid on their meshes, same dtype and global shape, the
// target's reduce op compatible. Throws MismatchError naming the array and the problem.
void check_compatible(const Mesh& src_mesh, const Mesh& dst_mesh, const XArray& a);
// Plans the batch. Throws MismatchError when an array does not fit (check_compatible) and
// Error when the memory cap is too small. The plan is the same on every rank (deterministic).
XPlan plan_batch(const Mesh& src_mesh, const Mesh& dst_mesh, std::vector<XArray> arrays, const XOptions& opts = {});
// One array from one mesh to another.
XPlan plan_cross(const Mesh& src_mesh, const Mesh& dst_mesh, const Type& src, const Type& dst,
                 const XOptions& opts = {});

// Fingerprint of what the plan moves (meshes, arrays, moves): ranks that agree on it run the
// same messages.
std::string xplan_fingerprint(const XPlan& p);
std::string to_string(const XPlan& p);  // readable: arrays, then per bucket and round the traffic

struct XSimResult {
  bool ok = false;
  std::string error;
  std::vector<std::int64_t> bytes_recv;  // per world rank, measured by delivering every message
  std::int64_t workspace_max = 0;        // staging bytes a rank held at once
};
// Runs the plan on every world rank in one process with index-filled data (each array's own
// fill, docs/design.md 5) and checks every target shard. `pre` plans are checked with simulate().
XSimResult simulate_batch(const XPlan& plan);

}  // namespace reshard

template <>
struct fmt::formatter<reshard::XPlan> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::XPlan& p, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(reshard::to_string(p), ctx);
  }
};
