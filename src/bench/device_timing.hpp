#pragma once
// Timing of device work under MPI (`run` and `bench` with --backend nccl): each iteration starts
// after an MPI barrier, is bracketed by CUDA events on the stream it runs on, and counts as the
// slowest rank's time (MPI_Allreduce MAX), as mpi_timing.hpp does with MPI_Wtime. The work is
// waited for with the communicator's synchronize() (NCCL: with error polling and a timeout)
// before the events are read.
#include <vector>

#include <mpi.h>

#include "mpi_session.hpp"  // watched(): the deadline on the command's own blocking calls
#include "reshard/comm.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/error.hpp"

namespace reshard::bench {

template <class F>
std::vector<double> time_device_iterations(MPI_Comm comm, Communicator& c, void* stream, int iters, F&& body) {
  EventTimer timer;
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    if (auto armed = watched(comm, "MPI_Barrier"); MPI_Barrier(comm) != MPI_SUCCESS) throw Error("MPI_Barrier failed");
    timer.start(stream);
    body();
    timer.stop(stream);
    c.synchronize();
    double dt = timer.seconds(), slowest = 0;
    if (auto armed = watched(comm, "MPI_Allreduce"); MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm) != MPI_SUCCESS)
      throw Error("MPI_Allreduce failed");
    times.push_back(slowest);
  }
  return times;
}

}  // namespace reshard::bench
