// `reshard run --to-mesh M2` and `reshard run --batch FILE` (docs/design.md 10): a cross-mesh or
// batched plan over every rank of MPI_COMM_WORLD, with fill, check, dump and timing, and the
// baselines the benchmarks compare against (--compare, src/bench/xbench.hpp): the same arrays
// one call each, one raw MPI_Alltoallv moving the same bytes between the same ranks, and
// gathering every source shard on one rank, then scattering every target shard from it, timed
// in interleaved rounds with the batched call, each checked.
#include <bit>
#include <climits>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../bench/mpi_session.hpp"
#include "../bench/mpi_timing.hpp"
#include "../bench/xbench.hpp"
#include "xcommands.hpp"
#include "xplan_json.hpp"
#include "reshard/error.hpp"
#include "reshard/xcontext.hpp"

namespace reshard::cli {

using namespace reshard::bench;  // the MPI session and timing shared with `reshard bench`

namespace {

void write_file(const std::string& dir, const std::string& name, const Bytes& data) {
  static_assert(std::endian::native == std::endian::little, "--dump writes the host's bytes as little-endian");
  std::filesystem::create_directories(dir);
  const std::string path = fmt::format("{}/{}", dir, name);
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!f) throw Error(fmt::format("cannot write {}", path));
}

nlohmann::json times(const TimeStats& t) {
  return {{"time_median_s", t.median_s}, {"time_min_s", t.min_s}, {"time_max_s", t.max_s}, {"iters", t.iters}};
}

}  // namespace

int run_cross(const XRunArgs& a, int rank, int size) {
  XInputs in;
  XOptions opts;
  try {
    in = x_inputs(a.mesh, a.from, a.to, a.to_mesh, a.batch);
    opts = x_options(a.memory_cap);
  } catch (const std::exception& e) {
    abort_all("run", rank, e.what());
  }
  try {
    XContext x(in.src_mesh, in.dst_mesh, MPI_COMM_WORLD, opts);
    std::shared_ptr<const XPlan> plan = x.plan(in.arrays);
    const bool fill = a.fill == "index" || a.check;
    XBuffers b = x_buffers(x, *plan, fill);
    auto run = [&] { x.reshard(*plan, b.cin, b.mout); };
    const double first = stats_of(time_iterations(MPI_COMM_WORLD, 1, run)).median_s;
    TimeStats iters = stats_of(time_iterations(MPI_COMM_WORLD, a.iters, run));
    std::int64_t bad = -1;
    if (a.check) {
      bad = 0;
      for (std::size_t i = 0; i < plan->arrays.size(); ++i)
        bad += x.count_index_mismatches(plan->arrays[i], b.out[i].data(), b.out[i].size());
    }
    if (!a.dump.empty() && x.dst_device() >= 0)
      for (std::size_t i = 0; i < plan->arrays.size(); ++i)
        write_file(in.batch ? fmt::format("{}/{}", a.dump, plan->arrays[i].name) : a.dump, fmt::format("rank{}.bin", rank),
                   b.out[i]);
    const std::int64_t peak = reduce_all(MPI_COMM_WORLD, x.workspace_peak_bytes(), MPI_MAX);
    const std::int64_t pre = reduce_all(MPI_COMM_WORLD, x.pre_workspace_bytes(), MPI_MAX);
    nlohmann::json j = xplan_to_json(*plan, in.batch);
    j["ranks"] = size;
    j["first_call_s"] = first;
    j.update(times(iters));
    j["workspace_peak_bytes"] = peak;  // measured: max over ranks of staging allocated
    if (pre) j["pre_workspace_bytes"] = pre;
    if (a.check) {
      j["checked"] = true;
      j["mismatches"] = bad;
    }
    bool compare_ok = true;
    if (a.compare) {
      // Every contender, the batched call included, in interleaved rounds on buffers of its
      // own (index-filled: each is checked); ratios are other / batched, per round, then median.
      XBuffers cb = x_buffers(x, *plan, true);
      Timing t;
      t.iters = std::max(1, a.iters);
      t.warmup = 2;
      std::vector<std::string> all(std::begin(kXStrategies), std::end(kXStrategies));
      std::vector<Row> rows = x_compare(x, *plan, cb, all, t);
      const Row& mine = rows.front();
      nlohmann::json cmp = {{"iters", t.iters}, {"warmup", t.warmup}, {"interleaved", true}};
      for (const Row& r : rows) {
        nlohmann::json o = times(r.time);
        o["verified"] = r.verified;
        o["check"] = r.check;
        o["mismatches"] = r.mismatches;
        o["bytes_recv_max"] = r.bytes_recv_max;
        o["peak_bytes"] = r.peak_bytes;
        if (&r != &mine) {
          // other / batched: > 1 where the batched call is faster (for raw: the fraction of
          // raw's speed it reaches); paired by round so that load changes cancel.
          std::vector<double> ratio;
          for (std::size_t k = 0; k < r.times.size() && k < mine.times.size(); ++k)
            if (mine.times[k] > 0) ratio.push_back(r.times[k] / mine.times[k]);
          o["ratio_to_batched"] = stats_of(ratio).median_s;
          j[r.strategy] = o;  // top-level keys, as before: single_calls, raw_alltoallv, gather_scatter
        }
        compare_ok = compare_ok && r.verified;
        cmp[r.strategy] = o;
      }
      j["compare"] = cmp;
    }
    if (rank == 0) {
      if (a.json) {
        fmt::print("{}\n", j.dump(2));
      } else {
        fmt::print("{}", to_string(*plan));
        if (a.check) fmt::print("  check: {}\n", bad ? fmt::format("FAILED, {} elements differ", bad) : "ok");
        fmt::print("  first call {:.1f} us", first * 1e6);
        if (iters.iters) fmt::print("; per iteration (max over ranks) median {:.1f} us over {}", iters.median_s * 1e6, iters.iters);
        fmt::print("; workspace allocated {} B (max rank)\n", peak);
        if (a.compare) {
          fmt::print("  interleaved with the batched call (median {:.1f} us):\n",
                     j["compare"]["reshard"]["time_median_s"].get<double>() * 1e6);
          for (const char* k : {"single_calls", "raw_alltoallv", "gather_scatter"})
            fmt::print("  {}: median {:.1f} us, {:.2f}x the batched call's time{}\n", k,
                       j[k]["time_median_s"].get<double>() * 1e6, j[k]["ratio_to_batched"].get<double>(),
                       j[k]["verified"].get<bool>() ? "" : " (CHECK FAILED)");
        }
      }
    }
    if (bad > 0) {
      if (rank == 0) fmt::print(stderr, "reshard run: check failed: {} elements differ\n", bad);
      return 1;
    }
    if (!compare_ok) {
      if (rank == 0) fmt::print(stderr, "reshard run: --compare: a baseline failed its check\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    abort_all("run", rank, e.what());
  }
}

}  // namespace reshard::cli
