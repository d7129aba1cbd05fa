// The watchdog (watchdog.hpp): one thread per process that sleeps until the armed call's
// deadline, and the reports and exits of a timeout.
#include "watchdog.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "reshard/error.hpp"

namespace reshard::mpi {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kRollCallTag = 0x5e6;  // MpiGroup::exchange uses 0x5e5

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Dog {
  std::mutex m;
  std::condition_variable cv;
  std::once_flag started;
  bool idle = false;  // the thread waits for an arm (arm() must wake it)
  bool armed = false;
  Clock::time_point start;
  Waiting w;
  std::string group;  // a copy of *w.group: the report outlives nothing
  // The last completed call.
  const char* last_call = nullptr;
  std::string last_group;
  Clock::time_point last_at;
  int rank = -1, thread_level = MPI_THREAD_SINGLE;
};

// Never destroyed: the thread may still wait on it while the process exits.
Dog& dog() {
  static Dog* d = new Dog;
  return *d;
}

void print_line(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

std::string last_heard_locked(const Dog& d) {
  if (!d.last_call) return "no call completed yet";
  return fmt::format("{} on group {}, {:.1f} s ago", d.last_call, d.last_group, since(d.last_at));
}

std::string list_ranks(const std::vector<int>& ranks) {
  return fmt::format("rank{} {}", ranks.size() == 1 ? "" : "s", fmt::join(ranks, ", "));
}

// Watchdog thread, MPI_THREAD_MULTIPLE: tells every member of the stuck group this rank's call
// number and listens for theirs for `grace_s`. Members whose own deadline passed answer; the
// others did not reach the call (or failed). Buffers and requests are left behind on purpose:
// the job ends right after.
std::string roll_call(const Waiting& w, const std::string& group, double grace_s) {
  int n = 0, me = 0;
  MPI_Comm_size(w.comm, &n);
  MPI_Comm_rank(w.comm, &me);
  auto* mine = new std::int64_t(w.seq);
  auto* theirs = new std::vector<std::int64_t>(n, -1);
  std::vector<MPI_Request> recvs(n, MPI_REQUEST_NULL);
  for (int p = 0; p < n; ++p)
    if (p != me) MPI_Irecv(&(*theirs)[p], 1, MPI_INT64_T, p, kRollCallTag, w.comm, &recvs[p]);
  for (int p = 0; p < n; ++p)
    if (p != me) {
      MPI_Request r = MPI_REQUEST_NULL;
      if (MPI_Isend(mine, 1, MPI_INT64_T, p, kRollCallTag, w.comm, &r) == MPI_SUCCESS) MPI_Request_free(&r);
    }
  const Clock::time_point t0 = Clock::now();
  std::vector<int> done(n);
  for (int left = n - 1; left > 0 && since(t0) < grace_s;) {
    int k = 0;
    if (MPI_Testsome(n, recvs.data(), &k, done.data(), MPI_STATUSES_IGNORE) != MPI_SUCCESS || k == MPI_UNDEFINED)
      break;
    if (k > 0) left -= k;
    else std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::vector<int> world = world_ranks(w.comm, n), silent, same;
  std::vector<std::string> elsewhere;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    if (recvs[p] != MPI_REQUEST_NULL) silent.push_back(world[p]);
    else if ((*theirs)[p] == w.seq) same.push_back(world[p]);
    else elsewhere.push_back(fmt::format("rank {} at call #{}", world[p], (*theirs)[p]));
  }
  std::string r = fmt::format("roll call on group {} (call #{} there, {:.0f} s):", group, w.seq, grace_s);
  if (!silent.empty()) r += fmt::format(" no answer from {} (failed, stuck, or not in this call);", list_ranks(silent));
  if (!same.empty()) r += fmt::format(" {} wait{} in the same call;", list_ranks(same), same.size() == 1 ? "s" : "");
  if (!elsewhere.empty()) r += fmt::format(" {};", fmt::join(elsewhere, ", "));
  return r;
}

// The deadline of `w` passed: report and end the job (watchdog thread).
[[noreturn]] void fire(const Waiting& w, const std::string& group, int rank, int level, const std::string& heard) {
  print_line(fmt::format("reshard: rank {}: {} on group {} made no progress for {} s; a peer may have failed "
                         "(last heard: {})",
                         rank, w.call, group, w.timeout_s, heard));
  if (level == MPI_THREAD_MULTIPLE) {
    const double grace = std::clamp(w.timeout_s / 10, 1.0, 10.0);
    print_line(fmt::format("reshard: rank {}: {} ending the job (MPI_Abort)", rank, roll_call(w, group, grace)));
    MPI_Abort(MPI_COMM_WORLD, 3);
  } else {
    print_line(fmt::format("reshard: rank {}: ending the job (exit 3; MPI_THREAD_MULTIPLE would also name the "
                           "ranks that did not arrive)",
                           rank));
  }
  std::_Exit(3);
}

void watch(Dog& d) {
  std::unique_lock lk(d.m);
  for (;;) {
    if (!d.armed) {
      d.idle = true;
      d.cv.wait(lk);
      d.idle = false;
      continue;
    }
    const auto deadline = d.start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(d.w.timeout_s));
    if (Clock::now() < deadline) {
      d.cv.wait_until(lk, deadline);
      continue;
    }
    const Waiting w = d.w;
    const std::string group = d.group, heard = last_heard_locked(d);
    const int rank = d.rank, level = d.thread_level;
    lk.unlock();
    fire(w, group, rank, level, heard);
  }
}

}  // namespace

double resolve_timeout(double opt) {
  // NaN compares false with everything: it would silently mean "the default".
  if (std::isnan(opt) || opt > 1e9)
    throw Error(fmt::format("ExecOptions::timeout_s = {}: expected seconds, a number >= 0 and at most 1e9 (0: no "
                            "timeout; < 0: $RESHARD_TIMEOUT_S or the default)", opt));
  if (opt >= 0) return opt;
  const char* env = std::getenv("RESHARD_TIMEOUT_S");
  if (!env || !*env) return kDefaultTimeoutS;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  if (end == env || *end != '\0' || !(v >= 0) || v > 1e9)
    throw Error(fmt::format("RESHARD_TIMEOUT_S='{}': expected seconds, a number >= 0 (0: no timeout)", env));
  return v;
}

std::vector<int> world_ranks(MPI_Comm comm, int n) {
  std::vector<int> mine(n), world(n, -1);
  std::iota(mine.begin(), mine.end(), 0);
  MPI_Group g = MPI_GROUP_NULL, w = MPI_GROUP_NULL;
  if (MPI_Comm_group(comm, &g) == MPI_SUCCESS && MPI_Comm_group(MPI_COMM_WORLD, &w) == MPI_SUCCESS)
    MPI_Group_translate_ranks(g, n, mine.data(), w, world.data());
  if (g != MPI_GROUP_NULL) MPI_Group_free(&g);
  if (w != MPI_GROUP_NULL) MPI_Group_free(&w);
  return world;
}

int world_rank() {
  int up = 0, down = 0, rank = -1;
  MPI_Initialized(&up);
  if (up) MPI_Finalized(&down);
  if (up && !down) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

WatchGuard::WatchGuard(const Waiting& w) {
  if (!(w.timeout_s > 0)) return;
  Dog& d = dog();
  std::call_once(d.started, [&d] {
    d.rank = world_rank();
    MPI_Query_thread(&d.thread_level);
    std::thread(watch, std::ref(d)).detach();
  });
  std::lock_guard lk(d.m);
  d.w = w;
  d.group = *w.group;
  d.start = Clock::now();
  d.armed = armed_ = true;
  if (d.idle) d.cv.notify_one();
}

WatchGuard::~WatchGuard() {
  if (!armed_) return;
  Dog& d = dog();
  std::lock_guard lk(d.m);
  d.armed = false;
  d.last_call = d.w.call;
  d.last_group = d.group;
  d.last_at = Clock::now();
}

void heard(const char* call, const std::string& group) {
  Dog& d = dog();
  std::lock_guard lk(d.m);
  d.last_call = call;
  d.last_group = group;
  d.last_at = Clock::now();
}

std::string last_heard() {
  Dog& d = dog();
  std::lock_guard lk(d.m);
  return last_heard_locked(d);
}

[[noreturn]] void end_job(const std::string& report) {
  print_line(report);
  MPI_Abort(MPI_COMM_WORLD, 3);
  std::_Exit(3);
}

}  // namespace reshard::mpi
