#pragma once
// Timing under MPI for `run` and `bench` (nccl-tests' convention): each iteration starts after
// a barrier, its time is the max across ranks, and the figures are taken over iterations.
#include <algorithm>
#include <vector>

#include <mpi.h>

#include "mpi_session.hpp"
#include "reshard/error.hpp"

namespace reshard::bench {

struct TimeStats {
  double median_s = 0, min_s = 0, max_s = 0;
  int iters = 0;
};

inline TimeStats stats_of(std::vector<double> t) {
  TimeStats s;
  s.iters = static_cast<int>(t.size());
  if (t.empty()) return s;
  std::sort(t.begin(), t.end());
  std::size_t n = t.size();
  s.median_s = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
  s.min_s = t.front();
  s.max_s = t.back();
  return s;
}

// Runs body() `iters` times on every rank of `comm`; per iteration the slowest rank's time.
template <class F>
std::vector<double> time_iterations(MPI_Comm comm, int iters, F&& body) {
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    if (auto armed = watched(comm, "MPI_Barrier"); MPI_Barrier(comm) != MPI_SUCCESS) throw Error("MPI_Barrier failed");
    double t0 = MPI_Wtime();
    body();
    double dt = MPI_Wtime() - t0, slowest = 0;
    if (auto armed = watched(comm, "MPI_Allreduce"); MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm) != MPI_SUCCESS)
      throw Error("MPI_Allreduce failed");
    times.push_back(slowest);
  }
  return times;
}

}  // namespace reshard::bench
