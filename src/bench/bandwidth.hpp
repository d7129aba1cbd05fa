#pragma once
// Bandwidth as nccl-tests defines it, the one definition `reshard run --json` and `reshard bench`
// both report (so that the same reshard gives the same GB/s in both):
//  - S (size_bytes): nccl-tests' per-rank "size", the larger side's buffer: max(largest source
//    shard, largest target shard). All-gather: the gathered output; reduce-scatter: the input;
//    all-to-all, all-reduce, send/recv: the buffer itself.
//  - algbw = S / t, t the median time per iteration (the max across ranks).
//  - busbw = algbw * F, F = B / S with B the fewest bytes the busiest device must receive: the
//    plan's lower bound (target bytes a device does not already hold) or, for a source with a
//    pending reduction, what the plan's reductions receive counted as ring algorithms. On
//    single-collective plans F is nccl-tests' factor: (n-1)/n for all-gather, reduce-scatter
//    and all-to-all, 2(n-1)/n for all-reduce, 1 for a permute (n: the collective's group).
// Pure: no MPI.
#include <algorithm>
#include <cstdint>

#include "reshard/plan.hpp"

namespace reshard::bench {

inline std::int64_t size_bytes(const PlanStats& st) { return std::max(st.src_local_bytes, st.dst_local_bytes); }

inline double bus_factor(const PlanStats& st) {
  const std::int64_t s = size_bytes(st);
  const std::int64_t must_receive = st.lower_bound_bytes >= 0 ? st.lower_bound_bytes : st.bytes_recv_max;
  return s > 0 ? static_cast<double>(must_receive) / static_cast<double>(s) : 0.0;
}

// GB/s (1e9 bytes per second); 0 when no time was measured.
inline double algbw_GBps(std::int64_t size, double seconds) {
  return seconds > 0 ? static_cast<double>(size) / seconds / 1e9 : 0.0;
}
inline double busbw_GBps(std::int64_t size, double factor, double seconds) { return algbw_GBps(size, seconds) * factor; }

}  // namespace reshard::bench
