#pragma once
// The benchmark engine behind `reshard bench` (src/cli/bench_cmd.cpp parses the command line
// into Options and calls run_bench). It owns the MPI session for the run, checks every case on
// every rank before anything runs, times and verifies every strategy and writes the reports.
#include <string>

#include "bench.hpp"
#include "sweep.hpp"

namespace reshard::bench {

struct Options {
  std::string suite;  // case file (docs/design.md 6)
  std::string strategies = "reshard,naive,greedy_per_axis,exchange,raw";
  std::string cases;  // comma list of case names; empty: all
  std::string json, csv, svg;  // report files written by rank 0; empty: not written
  std::string topology;  // per-axis links for the cost model
  std::string backend = "mpi";  // mpi (host buffers) or nccl (device buffers)
  Timing timing;
  // -b/-e/-f/-d (sweep.hpp): sizes such as "1M" and the element type; empty: the suite's own.
  std::string min_size, max_size, dtype;
  double factor = 2;
  bool check_every_call = false, explain = false;
  // Lines on the same pair of meshes, one after another, form one batched case (as in
  // `run --batch`); without it only lines with a target mesh are cross-mesh cases, one array each.
  bool batch = false;
};

// Runs the whole benchmark under MPI (initialises it unless the caller did) and returns the
// process exit code: 0 when every row verified, 1 when some row failed its check, 2 when the
// arguments or the suite are wrong (every rank returns 2; the first failing rank says why).
// A failure during the run prints and ends every rank with MPI_Abort.
int run_bench(const Options& options);

}  // namespace reshard::bench
