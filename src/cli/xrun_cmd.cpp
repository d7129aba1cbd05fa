// `reshard run --to-mesh M2` and `reshard run --batch FILE` (docs/design.md 10): a cross-mesh or
// batched plan over every rank of MPI_COMM_WORLD, with fill, check, dump and timing, and the
// baselines the benchmarks compare against (--compare): the same arrays one call each, one raw
// MPI_Alltoallv moving the same bytes between the same ranks, and gathering every source
// shard on one rank, then scattering every target shard from it.
#include <bit>
#include <climits>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../bench/mpi_session.hpp"
#include "../bench/mpi_timing.hpp"
#include "xcommands.hpp"
#include "xplan_json.hpp"
#include "reshard/error.hpp"
#include "reshard/xcontext.hpp"

namespace reshard::cli {

using namespace reshard::bench;  // the MPI session and timing shared with `reshard bench`

namespace {

struct Arrays {
  std::vector<std::vector<std::byte>> in, out;
  std::vector<ConstBuffer> cin;
  std::vector<MutBuffer> mout;
};

Arrays arrays_for(XContext& x, const XPlan& p, bool fill) {
  Arrays b;
  for (const XArray& a : p.arrays) {
    b.in.emplace_back(static_cast<std::size_t>(x.src_context().local_bytes(a.src)));
    if (fill) x.src_context().fill_index(a.src, b.in.back().data());
    b.out.emplace_back(static_cast<std::size_t>(x.dst_context().local_bytes(a.dst)));
  }
  for (std::size_t i = 0; i < p.arrays.size(); ++i) {
    b.cin.push_back({b.in[i].data(), b.in[i].size()});
    b.mout.push_back({b.out[i].data(), b.out[i].size()});
  }
  return b;
}

void write_file(const std::string& dir, const std::string& name, const std::vector<std::byte>& data) {
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

// One MPI_Alltoallv over the world moving, between every pair of ranks, the bytes the plan moves.
TimeStats time_raw(const XPlan& p, int rank, int size, int iters) {
  std::vector<int> sc(size, 0), rc(size, 0), sd(size, 0), rd(size, 0);
  for (const XMove& m : p.moves) {
    if (m.from == m.to) continue;
    const std::int64_t b = m.box.volume() * static_cast<std::int64_t>(size_of(p.arrays[m.array].src.dtype));
    if (m.from == rank) sc[m.to] += static_cast<int>(b);
    if (m.to == rank) rc[m.from] += static_cast<int>(b);
  }
  for (int i = 1; i < size; ++i) sd[i] = sd[i - 1] + sc[i - 1], rd[i] = rd[i - 1] + rc[i - 1];
  std::vector<std::byte> s(static_cast<std::size_t>(sd[size - 1] + sc[size - 1]) + 1),
      r(static_cast<std::size_t>(rd[size - 1] + rc[size - 1]) + 1);
  auto once = [&] {
    auto armed = watched(MPI_COMM_WORLD, "MPI_Alltoallv");
    mpi_check(MPI_Alltoallv(s.data(), sc.data(), sd.data(), MPI_BYTE, r.data(), rc.data(), rd.data(), MPI_BYTE,
                            MPI_COMM_WORLD), "MPI_Alltoallv");
  };
  once();
  return stats_of(time_iterations(MPI_COMM_WORLD, iters, once));
}

// Every source shard to one rank (the source mesh's first device), then every target shard from
// it: MPI_Gatherv and MPI_Scatterv of each array's bytes (the root's local reassembly is left
// out, which only flatters this baseline).
TimeStats time_gather_scatter(XContext& x, const XPlan& p, const Arrays& b, int size, int iters) {
  const int root = p.src_mesh.rank_of(0);
  std::vector<std::vector<int>> gc(p.arrays.size(), std::vector<int>(size, 0)), scn = gc;
  std::size_t gmax = 0, smax = 0;
  for (std::size_t a = 0; a < p.arrays.size(); ++a) {
    std::size_t gt = 0, stt = 0;
    for (int r = 0; r < size; ++r) {
      const int s = p.src_mesh.device_of(r), t = p.dst_mesh.device_of(r);
      gc[a][r] = s >= 0 ? static_cast<int>(p.arrays[a].src.local_bytes(p.src_mesh.without_ranks(), s)) : 0;
      scn[a][r] = t >= 0 ? static_cast<int>(p.arrays[a].dst.local_bytes(p.dst_mesh.without_ranks(), t)) : 0;
      gt += static_cast<std::size_t>(gc[a][r]);
      stt += static_cast<std::size_t>(scn[a][r]);
    }
    gmax = std::max(gmax, gt);
    smax = std::max(smax, stt);
  }
  std::vector<std::byte> gbuf(x.rank() == root ? gmax + 1 : 1), sbuf(x.rank() == root ? smax + 1 : 1);
  std::vector<int> displ(size);
  auto once = [&] {
    for (std::size_t a = 0; a < p.arrays.size(); ++a) {
      for (int r = 1; r < size; ++r) displ[r] = displ[r - 1] + gc[a][r - 1];
      auto armed = watched(MPI_COMM_WORLD, "MPI_Gatherv");
      mpi_check(MPI_Gatherv(b.in[a].data(), gc[a][x.rank()], MPI_BYTE, gbuf.data(), gc[a].data(), displ.data(),
                            MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Gatherv");
    }
    for (std::size_t a = 0; a < p.arrays.size(); ++a) {
      for (int r = 1; r < size; ++r) displ[r] = displ[r - 1] + scn[a][r - 1];
      auto armed = watched(MPI_COMM_WORLD, "MPI_Scatterv");
      std::vector<std::byte>& out = const_cast<std::vector<std::byte>&>(b.out[a]);
      mpi_check(MPI_Scatterv(sbuf.data(), scn[a].data(), displ.data(), MPI_BYTE, out.data(), scn[a][x.rank()],
                             MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Scatterv");
    }
  };
  once();
  return stats_of(time_iterations(MPI_COMM_WORLD, iters, once));
}

// The same arrays one reshard call each: on one mesh the ordinary Context (synthesized plans),
// across meshes one single-array cross-mesh plan each.
TimeStats time_single(XContext& x, const XPlan& p, Arrays& b, int iters) {
  std::vector<std::shared_ptr<const Plan>> one_mesh;
  std::vector<std::shared_ptr<const XPlan>> cross;
  const bool same = !p.cross_mesh();
  for (const XArray& a : p.arrays) {
    if (same) one_mesh.push_back(x.src_context().plan(a.src, a.dst));
    else cross.push_back(x.plan({a}));
  }
  auto once = [&] {
    for (std::size_t a = 0; a < p.arrays.size(); ++a) {
      if (same) x.src_context().reshard(*one_mesh[a], b.in[a].data(), b.in[a].size(), b.out[a].data(), b.out[a].size());
      else x.reshard(*cross[a], {&b.cin[a], 1}, {&b.mout[a], 1});
    }
  };
  once();
  return stats_of(time_iterations(MPI_COMM_WORLD, iters, once));
}

}  // namespace

int run_cross(const XRunArgs& a, int rank, int size) {
  XInputs in;
  XOptions opts;
  try {
    in = x_inputs(a.mesh, a.from, a.to, a.to_mesh, a.batch);
    opts.memory_cap = a.memory_cap;
    if (a.memory_cap < 0) throw Error("--memory-cap must be >= 0 bytes");
  } catch (const std::exception& e) {
    abort_all("run", rank, e.what());
  }
  try {
    XContext x(in.src_mesh, in.dst_mesh, MPI_COMM_WORLD, opts);
    std::shared_ptr<const XPlan> plan = x.plan(in.arrays);
    const bool fill = a.fill == "index" || a.check;
    Arrays b = arrays_for(x, *plan, fill);
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
    const int reps = std::max(1, a.iters);
    if (a.compare) {
      j["single_calls"] = times(time_single(x, *plan, b, reps));
      j["raw_alltoallv"] = times(time_raw(*plan, rank, size, reps));
      j["gather_scatter"] = times(time_gather_scatter(x, *plan, b, size, reps));
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
        if (a.compare)
          for (const char* k : {"single_calls", "raw_alltoallv", "gather_scatter"})
            fmt::print("  {}: median {:.1f} us\n", k, j[k]["time_median_s"].get<double>() * 1e6);
      }
    }
    if (bad > 0) {
      if (rank == 0) fmt::print(stderr, "reshard run: check failed: {} elements differ\n", bad);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    abort_all("run", rank, e.what());
  }
}

}  // namespace reshard::cli
