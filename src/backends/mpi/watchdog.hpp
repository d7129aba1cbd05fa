#pragma once
// Deadlines for the MPI backend's blocking calls (README "Errors and faults"), so that a rank
// whose peer died or is stuck ends the job with a message instead of waiting forever.
//
// A blocking collective cannot be interrupted: each one is armed on a watchdog thread (one per
// process, started by the first armed call; it sleeps until a deadline). A point-to-point round
// polls its requests itself (MpiGroup::exchange). When a deadline passes, the rank prints
//
//   reshard: rank R: <call> on group <axes> made no progress for T s; a peer may have failed (last heard: ...)
//
// and ends the job with exit code 3. For a collective, when MPI provides MPI_THREAD_MULTIPLE,
// the watchdog first holds a roll call on the group's communicator (every member whose own
// deadline passed answers with its call number; reserved tag, about max(1, T/10) s, at most
// 10 s), prints which ranks did not answer, and calls MPI_Abort(MPI_COMM_WORLD, 3): Open MPI
// then ends every rank. Below MPI_THREAD_MULTIPLE another thread may not call MPI, so the
// watchdog ends its own process with std::_Exit(3) instead; under mpirun (ORTE) a rank that
// exits without MPI_Finalize ends the job, and with other launchers the other ranks' own
// deadlines end them. A point-to-point timeout runs on the calling (main) thread, names the
// peers whose messages are still pending and calls MPI_Abort at any thread level.
//
// The deadline: ExecOptions::timeout_s (Context), else $RESHARD_TIMEOUT_S, else 300 s; 0: none.
// Thread safety: WatchGuard and heard() from the thread that makes the MPI calls.
#include <cstdint>
#include <string>
#include <vector>

#include <mpi.h>

namespace reshard::mpi {

constexpr double kDefaultTimeoutS = 300;

// `opt` when >= 0; else $RESHARD_TIMEOUT_S when set (seconds, >= 0); else kDefaultTimeoutS.
// Throws Error on a malformed variable.
double resolve_timeout(double opt);

// One blocking collective about to start: what the watchdog reports and where it holds its
// roll call. `group` must outlive the call.
struct Waiting {
  MPI_Comm comm = MPI_COMM_NULL;  // the group's communicator
  const char* call = "";          // "MPI_Alltoallv"
  const std::string* group = nullptr;  // the group's name: "{x,y}", "world"
  std::int64_t seq = 0;           // the call's number among the group's calls (members agree)
  double timeout_s = 0;           // 0: not armed
};

// Arms the watchdog for one blocking call; disarms it (and records the call as last heard)
// when it ends.
class WatchGuard {
 public:
  explicit WatchGuard(const Waiting& w);
  ~WatchGuard();
  WatchGuard(const WatchGuard&) = delete;
  WatchGuard& operator=(const WatchGuard&) = delete;

 private:
  bool armed_ = false;
};

// Records a completed call (reports say "last heard: <call> on group <group>, T s ago").
void heard(const char* call, const std::string& group);
// The last completed call and how long ago, or "no call completed yet".
std::string last_heard();
// This process's rank in MPI_COMM_WORLD (-1 when MPI is not running).
int world_rank();
// The MPI_COMM_WORLD ranks of `comm`'s n members, by their rank in `comm` (-1 where unknown).
std::vector<int> world_ranks(MPI_Comm comm, int n);
// Prints `report` (a line) to stderr and ends the job: MPI_Abort(MPI_COMM_WORLD, 3). From the
// thread that makes the MPI calls.
[[noreturn]] void end_job(const std::string& report);

}  // namespace reshard::mpi
