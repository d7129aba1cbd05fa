#pragma once
// `reshard bench` (docs/design.md 5): the figures it measures and the reports it writes.
//
// Definitions (also in the JSON's "definitions" object and the README):
//  - time: every iteration starts after a barrier; its time is the max across ranks
//    (MPI_Allreduce MAX of each rank's MPI_Wtime difference); time_median_s, time_min_s and
//    time_max_s are taken over the timed iterations, after the warm-up ones. The strategies
//    of a case take turns, one iteration each per round (see Contender).
//  - S (size_bytes), algbw and busbw: nccl-tests' definitions, in bandwidth.hpp (`run` uses
//    the same). S is the same for every strategy of a case, so algbw ratios are speedups.
//  - peak_bytes: max over ranks of the bytes the strategy holds at once: source shard + target
//    shard + the executor's workspace high-water mark (Executor::workspace_peak_bytes(), bytes
//    it actually allocated for the plan); for raw, its send and receive buffers.
//  - bytes_recv_max: max over devices of bytes received from other devices (plan stats; for
//    raw, what the MPI call receives, reductions counted as ring algorithms move them).
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <numeric>
#include <random>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <mpi.h>
#include <nlohmann/json.hpp>

#include "mpi_timing.hpp"
#include "reshard/cases.hpp"
#include "sweep.hpp"

namespace reshard::bench {

inline constexpr const char* kStrategies[] = {"reshard", "naive", "greedy_per_axis", "dtensor", "exchange", "raw"};
// A baseline counts as faster than reshard on a case when reshard's time exceeds it by more.
inline constexpr double kSlowerTolerance = 1.05;

// Storage for every buffer the bench times with: whole pages of their own, mapped afresh on
// each allocation (mmap), so that copying a buffer (Contender::refresh) moves it to other
// physical pages. Where a buffer's pages lie changes its copy speed by 10-20% on a VM; without
// fresh pages each strategy would keep its own luck for the whole run.
template <class T>
struct PageAllocator {
  using value_type = T;
  PageAllocator() = default;
  template <class U>
  PageAllocator(const PageAllocator<U>&) {}
  T* allocate(std::size_t n) {
    void* p = mmap(nullptr, std::max<std::size_t>(n * sizeof(T), 1), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) { munmap(p, std::max<std::size_t>(n * sizeof(T), 1)); }
  template <class U>
  bool operator==(const PageAllocator<U>&) const { return true; }
};
using Bytes = std::vector<std::byte, PageAllocator<std::byte>>;

struct Timing {
  int warmup = 3, iters = 20;
};

// One strategy's figures on one case. Every figure is agreed across the participating ranks.
struct Row {
  std::string strategy;
  std::vector<std::string> steps;  // "all_gather{x}", ...; raw: the MPI call
  std::vector<std::string> calls;  // how rank 0's executor ran each step (Executor::explain)
  TimeStats time;
  std::vector<double> times;  // per timed iteration (round), the max across ranks
  double first_call_s = 0;  // the first execution (prepares communicators and buffers)
  std::int64_t bytes_recv_max = 0, peak_bytes = 0, workspace_bytes = 0;
  bool verified = false;
  std::string check;  // what was verified: "target" (against the index fill) or "transport" (raw)
  std::int64_t mismatches = 0;  // elements wrong in the check (the table's #wrong); 0 when verified
  std::optional<bool> output_is_target;  // raw: whether its output already is the target shard
  std::string same_plan_as;  // set when the plan equals another strategy's, step for step (timed once)
  std::vector<std::string> notes;
};

// A strategy made ready to time on one case: buffers allocated and filled, plan prepared. The
// strategies of a case are timed in interleaved rounds (one iteration of each, in a shuffled
// order), so that a change in the machine's load falls on all of them alike.
struct Contender {
  Row row;                           // what is known before timing; row.times fills per round
  std::function<void()> once;        // one execution; collective over the case's ranks
  std::function<void(Row&)> finish;  // after timing: the check and the measured figures
  std::function<void()> refresh;     // between rounds: its buffers moved to fresh pages (local)
  // When set (--backend nccl): one timed execution, the max across ranks, measured with CUDA
  // events on the device's stream; otherwise MPI_Wtime around once().
  std::function<double()> time_once;
};

// One timed execution of `c` (the max across ranks). Collective over `comm`.
inline double time_one(MPI_Comm comm, Contender& c) {
  return c.time_once ? c.time_once() : time_iterations(comm, 1, c.once).front();
}

// The first call (timed alone: row.first_call_s) and t.warmup - 1 more. Collective over `comm`.
inline void warm_up(MPI_Comm comm, const Timing& t, Contender& c) {
  c.row.first_call_s = time_one(comm, c);
  for (int i = 1; i < t.warmup; ++i) time_one(comm, c);
}

// Interleaved rounds: each round times every contender once, in an order shuffled per round
// (so that no strategy always runs right after the same other one, whose cache and memory
// footprint it would inherit), then moves every contender's buffers to fresh pages. The seed
// is fixed: every rank draws the same orders.
inline void time_rounds(MPI_Comm comm, int iters, std::vector<Contender>& cs) {
  std::mt19937 rng(20240611);
  std::vector<std::size_t> order(cs.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  for (int i = 0; i < iters; ++i) {
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t k : order) cs[k].row.times.push_back(time_one(comm, cs[k]));
    for (Contender& c : cs) c.refresh();
  }
}

struct CaseResult {
  Case spec;  // a batch: the first array's line, named after the batch, from/to summarised
  int arrays = 1;  // arrays of a batched case
  bool ran = false;
  int devices = 0;
  std::int64_t size_bytes = 0;  // S
  double bus_factor = 0;        // F
  std::vector<std::string> notes;  // why it was skipped, why raw does not apply, ...
  std::vector<Row> rows;

  const Row* row(const std::string& strategy) const;
};

struct Report {
  std::string suite, topology;
  std::string backend = "mpi";  // mpi (host buffers) or nccl (device buffers, CUDA-event timing)
  int ranks = 0, iters = 0, warmup = 0;
  bool check_every_call = false;
  bool yield_when_idle = false;  // MPI ranks yield the CPU while waiting (yield_when_oversubscribed())
  std::vector<std::string> strategies;
  Sweep sweep;  // -b/-e/-f/-d, when given
  std::vector<CaseResult> cases;
};

// Reshard against one other strategy over the cases where both ran: ratio = t_other / t_reshard
// (speedup of reshard; for raw, the fraction of raw's speed reshard reaches).
struct Versus {
  std::string other;
  int cases = 0;
  double geomean = 0, max = 0, min = 0;
  std::string max_case, min_case;
  std::vector<std::string> slower;  // cases where reshard is more than 5% slower than `other`
  // Of those, the ones where `other` was faster in at least 3 of 4 rounds (paired q3 < 1):
  // the rest are within the run's noise.
  std::vector<std::string> slower_consistently;
  // Peak memory of `other` relative to reshard's.
  double peak_geomean = 0, peak_max = 0, peak_min = 0;
  std::string peak_min_case;
};

struct Summary {
  std::vector<Versus> versus;
  int cases_run = 0, cases_skipped = 0, rows = 0, rows_verified = 0;
  std::vector<std::string> reshard_peak_above_naive;  // cases where reshard holds more than naive
  std::optional<Versus> worst;  // the lowest speedup of reshard over any baseline except raw
};

double algbw_GBps(const CaseResult& c, const Row& r);
double busbw_GBps(const CaseResult& c, const Row& r);
// t_strategy / t_reshard on this case, if both ran (ratio of the medians).
std::optional<double> reshard_speedup(const CaseResult& c, const Row& r);
// The same ratio taken round by round (both timed in the same interleaved round, so that a
// change of the machine's load cancels out): quartiles over the rounds.
struct Quartiles {
  double q1 = 0, median = 0, q3 = 0;
};
std::optional<Quartiles> paired_speedup(const CaseResult& c, const Row& r);

Summary summarize(const Report& rep);
nlohmann::json to_json(const Report& rep, const Summary& sum);
std::string to_csv(const Report& rep);
// The CSV in pieces, so that rows are appended as cases finish: the header line, then each
// case's rows.
std::string csv_header();
std::string csv_rows(const CaseResult& c);
// The stdout table, in pieces so that cases print as they finish.
std::string table_header(const Report& rep);
std::string table_case(const CaseResult& c);
std::string table_summary(const Report& rep, const Summary& sum);
// A standalone SVG: speedup of reshard over each strategy per case (log scale), then bytes
// received and peak memory per case and strategy.
std::string to_svg(const Report& rep, const Summary& sum);

}  // namespace reshard::bench
