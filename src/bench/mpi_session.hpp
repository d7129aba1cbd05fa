#pragma once
// MPI for the life of a subcommand, the error path that brings every rank down, and small
// agreed reductions. For the commands that run under mpirun (`bench` and `run`).
#include <sched.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/format.h>
#include <mpi.h>

#include "../backends/mpi/watchdog.hpp"
#include "reshard/error.hpp"

namespace reshard::bench {

// Initialises MPI unless the caller already did (then leaves it alone at the end). World errors
// return codes instead of aborting, so that they become exceptions with a message. Asks for
// MPI_THREAD_MULTIPLE: only the main thread communicates, but when a collective makes no
// progress for the timeout the executor's watchdog thread holds a roll call of the group and
// calls MPI_Abort (README "Errors and faults"); with less it can only end its own process.
class MpiSession {
 public:
  MpiSession() {
    int done = 0, provided = 0;
    MPI_Initialized(&done);
    if (!done) MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), owned_ = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiSession() {
    if (owned_) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
};

// Before MPI_Init: when mpirun starts more ranks on this node than the process may use CPUs
// (OMPI_COMM_WORLD_LOCAL_SIZE against sched_getaffinity), asks Open MPI to yield the CPU while
// a rank waits (OMPI_MCA_mpi_yield_when_idle=1) instead of spinning on a core another rank
// needs; on 4 ranks over 2 cores that makes collectives about 3x faster and far less noisy.
// A value the user set is kept. Returns whether ranks yield when idle.
inline bool yield_when_oversubscribed() {
  const char* set = std::getenv("OMPI_MCA_mpi_yield_when_idle");
  if (set) return std::string(set) == "1" || std::string(set) == "true";
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  cpu_set_t cpus;
  if (!local || sched_getaffinity(0, sizeof cpus, &cpus) != 0) return false;
  if (std::atoi(local) <= CPU_COUNT(&cpus)) return false;
  setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
  return true;
}

// Prints `reshard <command>: error (rank r): what` and ends every rank (MPI_Abort), so that no
// rank is left waiting in a collective for one that failed.
[[noreturn]] inline void abort_all(const char* command, int rank, const std::string& what) {
  fmt::print(stderr, "reshard {}: error (rank {}): {}\n", command, rank, what);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::abort();  // MPI_Abort does not return
}

// Arms the executor's watchdog (watchdog.hpp) around one of the command's own blocking calls on
// `comm`, so that a rank waiting there for a peer that hangs in a plan also ends the job after
// $RESHARD_TIMEOUT_S (else 300 s) instead of waiting forever:
//   auto armed = watched(comm, "MPI_Barrier");
inline mpi::WatchGuard watched(MPI_Comm comm, const char* call) {
  static const std::string group = "world";
  static const double timeout_s = mpi::resolve_timeout(-1);
  static std::int64_t calls = 0;  // every rank makes the same calls in the same order
  return mpi::WatchGuard(mpi::Waiting{comm, call, &group, ++calls, timeout_s});
}

inline void mpi_check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw Error(fmt::format("{} failed (MPI error {})", what, rc));
}

// One 64-bit value reduced over `comm` (MPI_SUM, MPI_MAX, MPI_MIN), the same on every rank.
inline std::int64_t reduce_all(MPI_Comm comm, std::int64_t v, MPI_Op op) {
  std::int64_t r = 0;
  auto armed = watched(comm, "MPI_Allreduce");
  mpi_check(MPI_Allreduce(&v, &r, 1, MPI_INT64_T, op, comm), "MPI_Allreduce");
  return r;
}

}  // namespace reshard::bench
