#pragma once
// The `raw` strategy of `reshard bench`: where the reshard plan is one collective step, the
// plain MPI call that moves the same bytes with no packing, no staging and no executor:
//
//   all_gather      MPI_Allgather of the source shard (padded to the largest shard)
//   all_to_all      MPI_Alltoall of the source shard, split in equal chunks
//   reduce_scatter  MPI_Reduce_scatter_block of the source shard (equal blocks)
//   all_reduce      MPI_Allreduce of the source shard
//   permute         MPI_Sendrecv of the whole shard with the partners of the permute
//
// each over the step's group (an MPI_Comm_split of the mesh's ranks, the executor's grouping),
// with the executor's MPI datatypes and reduction ops. Raw is the roofline, not a reshard: its
// output is in the target layout only where no packing is needed. It is verified as transport:
// every rank's received bytes are compared with what the MPI call's semantics give from the
// index-filled source shards of its peers (reductions within the element type's rounding). It
// also says whether its output happens to be the target shard itself.
#include <optional>
#include <string>

#include "bench.hpp"
#include "reshard/context.hpp"

namespace reshard::bench {

struct RawCall {
  Step step;             // the reshard plan's one step
  std::string mpi_call;  // "MPI_Allgather", ...
};

// The raw call standing in for `plan` (a reshard plan), or nullopt with `why` set. The answer
// depends on the plan only, so every device gets the same one. Local.
std::optional<RawCall> raw_call_for(const Plan& plan, std::string& why);

// The raw call made ready and warmed up. Collective over the Context's participants; ctx and
// plan must outlive the contender.
Contender raw_contender(Context& ctx, const Plan& plan, const RawCall& call, const Timing& timing);

}  // namespace reshard::bench
