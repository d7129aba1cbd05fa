#pragma once
// Batched and cross-mesh plans against their baselines, for `run --batch/--to-mesh --compare`
// and for `bench` on batches and cross-mesh cases (docs/batched.md). Four contenders (bench.hpp)
// over every rank of the XContext's communicator, each moving the batch's arrays from their
// source shards to their target shards:
//
//   reshard         the batched plan on the XContext (one call for all arrays)
//   single_calls    the same arrays one call each: on one mesh the ordinary Context
//                   (synthesized plans), across meshes one single-array cross-mesh plan each
//   raw_alltoallv   one MPI_Alltoallv over the world moving, between every pair of ranks, the
//                   bytes the batched plan moves (contiguous buffers: no packing, no executor)
//   gather_scatter  every source shard to one rank (MPI_Gatherv per array), then every target
//                   shard from it (MPI_Scatterv per array); the root's reassembly of the global
//                   arrays is done once before timing, which only flatters this baseline
//
// Timing: each contender is warmed up (its first call timed alone), then the contenders take
// turns in interleaved rounds (time_rounds, bench.hpp), so that a change of the machine's load
// falls on all of them alike and the ratios of one run are fair.
//
// Checks (after timing, one more call each): reshard and single_calls write the target shards,
// compared with the index fill ("target"); raw_alltoallv's received bytes are compared with the
// pattern each sender wrote ("transport"); gather_scatter's gathered shards are compared with
// the sources on the root and its scattered shards are the target shards ("target").
#include <memory>
#include <string>
#include <vector>

#include "bench.hpp"
#include "reshard/xcontext.hpp"

namespace reshard::bench {

// This rank's shards of every array of a batch: sources index-filled (`fill`), targets zero.
struct XBuffers {
  std::vector<Bytes> in, out;
  std::vector<ConstBuffer> cin;
  std::vector<MutBuffer> mout;
};
XBuffers x_buffers(XContext& x, const XPlan& p, bool fill);

inline constexpr const char* kXStrategies[] = {"reshard", "single_calls", "raw_alltoallv", "gather_scatter"};

// The contender `strategy` (one of kXStrategies), warmed up. Collective over the XContext's
// communicator; x, plan and b must outlive it. Contenders that write target shards share `b`.
Contender x_contender(const std::string& strategy, XContext& x, const XPlan& plan, XBuffers& b,
                      const Timing& timing);

// Every strategy in `strategies`, timed in interleaved rounds and checked: one row each.
std::vector<Row> x_compare(XContext& x, const XPlan& plan, XBuffers& b, const std::vector<std::string>& strategies,
                           const Timing& timing);

}  // namespace reshard::bench
