// Catch2 main for tests under mpirun. Every rank runs the same test cases in the same order
// (they make collective calls). Rank 0 reports to stdout; the other ranks report to a file
// that they print (prefixed with the rank) only if they saw failures. The exit code is the
// same on every rank: non-zero if any rank failed, so a failure anywhere fails the test.
#define CATCH_CONFIG_RUNNER
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <mpi.h>

namespace {

void print_log(const std::string& path, int rank) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) fmt::print(stderr, "[rank {}] {}\n", rank, line);
}

}  // namespace

int main(int argc, char** argv) {
  // As `reshard` does (src/bench/mpi_session.hpp): the watchdog thread may then call MPI.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Catch::Session session;
  int rc = session.applyCommandLine(argc, argv);
  if (rc != 0) {
    MPI_Finalize();
    return rc;
  }
  std::string log;
  if (rank != 0) {
    log = (std::filesystem::temp_directory_path() / fmt::format("reshard-test-{}-rank{}.txt", getpid(), rank)).string();
    session.configData().outputFilename = log;
  }
  int failed = session.run();
  int worst = 0;
  MPI_Allreduce(&failed, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (!log.empty()) {
    if (failed) print_log(log, rank);
    std::filesystem::remove(log);
  }
  if (rank == 0 && worst && !failed) fmt::print(stderr, "some other rank failed (its report is above)\n");
  MPI_Finalize();
  return worst ? 1 : 0;
}
