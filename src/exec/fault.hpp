#pragma once
// Fault injection, for the fault tests only (tests/mpi/faults.cmake, tests/mpi/test_faults.cpp).
// The executor calls fault_point() on every device before each step of a plan runs (after the
// agreement check, so that a fault at step k > 1 strikes after data started moving).
//
//   RESHARD_FAULT="rank=R,step=K,kind=throw|exit|abort|kill|hang[,call=N]"
//
// rank: the device that fails (its number in the mesh), or `all`; step: the plan's step,
// 1-based; call: the Nth time this device reaches that step (default 1). Kinds: throw
// (reshard::Error on that device), exit (std::_Exit(7), no MPI_Finalize), abort (std::abort),
// kill (SIGKILL to itself), hang (sleeps forever). Every kind but throw prints one line to stderr
// first, so that a test can tell that the fault fired. The variable is read once, at the first
// fault_point(); set_fault() replaces it (in-process tests).
#include <string_view>

namespace reshard::exec {

struct Fault {
  enum class Kind { none, throw_error, exit, abort, kill, hang };
  Kind kind = Kind::none;
  int rank = -1;  // -1: every device
  int step = 1;
  int call = 1;
};

// Parses RESHARD_FAULT's syntax; "" is no fault. Throws ParseError naming the bad field.
Fault parse_fault(std::string_view spec);
// Replaces the fault (and RESHARD_FAULT) for the rest of the process; "" disables it and
// restarts the count of calls.
void set_fault(std::string_view spec);
// Fails as configured when `device` reaches `step` (1-based) for the configured time.
void fault_point(int device, int step);

}  // namespace reshard::exec
