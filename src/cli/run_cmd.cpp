// `reshard run` (docs/design.md 5): execute a plan across the MPI ranks, optionally filling,
// checking, dumping and timing it. Output comes from rank 0 only, except error messages.
//
// Errors never leave ranks waiting: a rank whose arguments do not parse prints why and calls
// MPI_Abort(MPI_COMM_WORLD, 2), which brings every rank down (it cannot take part in the
// agreement check without a mesh and types); any exception later (including the agreed
// "ranks disagree" and buffer checks, thrown on every rank) is printed and ends in MPI_Abort.
#include <bit>
#include <climits>
#include <filesystem>
#include <fstream>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "xcommands.hpp"
#include "../bench/mpi_session.hpp"
#include "../bench/bandwidth.hpp"
#include "../bench/mpi_timing.hpp"
#include "plan_json.hpp"
#include "reshard/context.hpp"
#include "reshard/error.hpp"
#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
#include "../bench/device_timing.hpp"
#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/nccl.hpp"
#endif

namespace reshard::cli {

namespace {

using namespace reshard::bench;  // the MPI session and timing shared with `reshard bench`

struct RunArgs {
  std::string mesh, from, to, backend = "mpi", fill = "zero", dump, topology, strategy = "reshard";
  bool check = false, json = false, raw_alltoall = false;
  int iters = 0;
  XRunArgs x;  // --to-mesh, --batch, --memory-cap, --compare
};

struct Inputs {
  Mesh mesh;
  Type src, dst;
  SynthOptions opts;
};

Inputs parse_or_abort(const RunArgs& a, int rank) {
  try {
#if !(defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL)
    if (a.backend == "nccl")
      throw Error("--backend nccl: this build has no NCCL backend (it needs CUDA, NCCL and MPI at configure "
                  "time, and RESHARD_WITH_NCCL not OFF); use --backend mpi");
#endif
    if (a.backend == "nccl" && a.raw_alltoall)
      throw Error("--raw-alltoall times MPI_Alltoall on host buffers; use it with --backend mpi");
    Inputs in{Mesh::parse(a.mesh), {}, {}, {}};
    in.src = Type::parse(a.from, in.mesh);
    in.dst = Type::parse(a.to, in.mesh);
    check_compatible(in.mesh, in.src, in.dst);
    in.opts.strategy = strategy_from_name(a.strategy);
    if (!a.topology.empty()) in.opts.topology = Topology::parse(a.topology, in.mesh);
    return in;
  } catch (const std::exception& e) {
    abort_all("run", rank, e.what());
  }
}

// What one run measured, agreed across the participating ranks.
struct Outcome {
  double first_call_s = 0;  // the first execution (prepares the plan: communicators, buffers)
  TimeStats iters;
  std::optional<TimeStats> raw;  // one MPI_Alltoall of the source shard's bytes
  std::int64_t raw_bytes_per_rank = 0;
  std::optional<std::int64_t> mismatches;
  std::int64_t workspace_peak = 0;  // max over ranks of bytes the executor allocated
};

// One raw MPI_Alltoall moving the largest source shard from every rank, split evenly.
TimeStats time_raw_alltoall(MPI_Comm comm, std::int64_t shard_bytes, int iters, std::int64_t& per_rank) {
  int n = 0;
  MPI_Comm_size(comm, &n);
  const std::int64_t chunk = (shard_bytes + n - 1) / n;
  per_rank = chunk * n;
  if (chunk > INT_MAX) throw Error("the source shard is too large for one MPI_Alltoall of bytes");
  std::vector<std::byte> send(static_cast<std::size_t>(per_rank)), recv(send.size());
  auto once = [&] {
    auto armed = watched(comm, "MPI_Alltoall");
    if (MPI_Alltoall(send.data(), static_cast<int>(chunk), MPI_BYTE, recv.data(), static_cast<int>(chunk),
                     MPI_BYTE, comm) != MPI_SUCCESS)
      throw Error("MPI_Alltoall failed");
  };
  once();  // warm-up
  return stats_of(time_iterations(comm, iters, once));
}

void dump_shard(const std::string& dir, int rank, const std::vector<std::byte>& shard) {
  static_assert(std::endian::native == std::endian::little, "--dump writes the host's bytes as little-endian");
  std::filesystem::create_directories(dir);  // every rank; concurrent creation is fine
  std::string path = fmt::format("{}/rank{}.bin", dir, rank);
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(shard.data()), static_cast<std::streamsize>(shard.size()));
  if (!f) throw Error(fmt::format("cannot write {}", path));
}

Outcome execute(const RunArgs& a, const Inputs& in, Context& ctx, const Plan& plan) {
  Outcome o;
  MPI_Comm comm = ctx.comm();
  std::vector<std::byte> src(static_cast<std::size_t>(ctx.local_bytes(in.src)));
  std::vector<std::byte> dst(static_cast<std::size_t>(ctx.local_bytes(in.dst)));
  if (a.fill == "index" || a.check) ctx.fill_index(in.src, src.data());
  auto run = [&] { ctx.reshard(plan, src.data(), src.size(), dst.data(), dst.size()); };
  o.first_call_s = stats_of(time_iterations(comm, 1, run)).median_s;
  o.iters = stats_of(time_iterations(comm, a.iters, run));
  if (a.raw_alltoall)
    o.raw = time_raw_alltoall(comm, plan.stats.src_local_bytes, std::max(a.iters, 1), o.raw_bytes_per_rank);
  if (a.check) o.mismatches = ctx.count_index_mismatches(in.dst, dst.data(), dst.size(), &in.src);
  if (!a.dump.empty()) dump_shard(a.dump, ctx.mesh().rank_of(ctx.device()), dst);
  o.workspace_peak = reduce_all(comm, ctx.executor()->workspace_peak_bytes(), MPI_MAX);
  return o;
}

#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
// --backend nccl: the plan on device buffers over NCCL, one GPU per rank (the node-local rank
// modulo the visible devices). The source is filled and the target checked on the device; each
// iteration is timed with CUDA events on the communicator's stream (max across ranks).
Outcome execute_nccl(const RunArgs& a, const Inputs& in, Context& ctx, const Plan& plan, std::string& explained) {
  struct Stream {
    void* s = stream_create();
    ~Stream() { stream_destroy(s); }
  };
  Outcome o;
  MPI_Comm comm = ctx.comm();
  const int me = ctx.device();
  select_local_cuda_device(comm);
  Stream stream;
  auto nccl = make_nccl_communicator(comm, ctx.mesh(), stream.s);  // destroyed before the stream
  ExecOptions eo;
  eo.memory = Memory::device;
  Executor exec(*nccl, eo);
  DeviceBytes src(static_cast<std::size_t>(ctx.local_bytes(in.src)), DeviceBytes::Kind::device);
  DeviceBytes dst(static_cast<std::size_t>(ctx.local_bytes(in.dst)), DeviceBytes::Kind::device);
  if (a.fill == "index" || a.check) device_fill_index(src.get(), in.src, ctx.mesh(), me, stream.s);
  else memset_async(src.get(), 0, src.size(), stream.s);
  memset_async(dst.get(), 0, dst.size(), stream.s);
  auto run = [&] { exec.execute(plan, src.get(), src.size(), dst.get(), dst.size()); };
  o.first_call_s = stats_of(time_device_iterations(comm, *nccl, stream.s, 1, run)).median_s;
  o.iters = stats_of(time_device_iterations(comm, *nccl, stream.s, a.iters, run));
  std::vector<std::byte> host;
  if (!a.dump.empty() || (a.check && in.dst.op != ReduceOp::none)) {
    host.resize(dst.size());
    memcpy_async(host.data(), dst.get(), dst.size(), stream.s);
    nccl->synchronize();
  }
  if (a.check) {
    if (in.dst.op == ReduceOp::none)
      o.mismatches = reduce_all(comm, device_check_index(dst.get(), in.dst, ctx.mesh(), me, stream.s, &in.src), MPI_SUM);
    else  // a pending reduction: reduced over its group (on the host) first
      o.mismatches = ctx.count_index_mismatches(in.dst, host.data(), host.size(), &in.src);
  }
  if (!a.dump.empty()) dump_shard(a.dump, ctx.mesh().rank_of(me), host);
  o.workspace_peak = reduce_all(comm, exec.workspace_peak_bytes(), MPI_MAX);
  explained = exec.explain(plan);
  return o;
}
#endif

nlohmann::json to_json(const Plan& plan, const Outcome& o, int ranks, const std::string& backend) {
  nlohmann::json j = plan_to_json(plan);
  j["backend"] = backend;
  if (backend == "nccl") j["timer"] = "cuda_events";
  j["ranks"] = ranks;
  j["first_call_s"] = o.first_call_s;
  j["iters"] = o.iters.iters;
  if (o.iters.iters) {
    // Per iteration: the max across ranks; then median, min and max over iterations.
    j["time_median_s"] = o.iters.median_s;
    j["time_min_s"] = o.iters.min_s;
    j["time_max_s"] = o.iters.max_s;
    // nccl-tests' definitions, the same as `reshard bench` (src/bench/bandwidth.hpp).
    j["size_bytes"] = size_bytes(plan.stats);
    j["algbw_GBps"] = algbw_GBps(size_bytes(plan.stats), o.iters.median_s);
    j["busbw_GBps"] = busbw_GBps(size_bytes(plan.stats), bus_factor(plan.stats), o.iters.median_s);
  }
  j["workspace_peak_bytes"] = o.workspace_peak;  // measured: max over ranks of bytes allocated
  if (o.raw) {
    j["raw_alltoall_bytes_per_rank"] = o.raw_bytes_per_rank;
    j["raw_alltoall_median_s"] = o.raw->median_s;
    j["raw_alltoall_min_s"] = o.raw->min_s;
  }
  if (o.mismatches) {
    j["checked"] = true;
    j["mismatches"] = *o.mismatches;
  }
  return j;
}

std::string human_s(double s) {
  return s >= 1 ? fmt::format("{:.3f} s", s) : s >= 1e-3 ? fmt::format("{:.3f} ms", s * 1e3) : fmt::format("{:.1f} us", s * 1e6);
}

void print_readable(const Plan& plan, const Outcome& o, int ranks, const std::string& explained,
                    const std::string& backend) {
  fmt::print("reshard run: mesh {} on {} ranks{}, {} -> {}: {} steps ({} plan); rank 0 runs them as\n{}", plan.mesh,
             ranks, backend == "nccl" ? " (NCCL, device buffers)" : "", plan.src, plan.dst, plan.steps.size(),
             plan.strategy, explained);
  if (o.mismatches)
    fmt::print("  check: {}\n", *o.mismatches ? fmt::format("FAILED, {} elements differ", *o.mismatches) : "ok");
  fmt::print("  first call {}", human_s(o.first_call_s));
  if (o.iters.iters)
    fmt::print("; per iteration (max over ranks) median {}, min {}, max {} over {} iterations, algbw {:.2f} GB/s, "
               "busbw {:.2f} GB/s",
               human_s(o.iters.median_s), human_s(o.iters.min_s), human_s(o.iters.max_s), o.iters.iters,
               algbw_GBps(size_bytes(plan.stats), o.iters.median_s),
               busbw_GBps(size_bytes(plan.stats), bus_factor(plan.stats), o.iters.median_s));
  fmt::print("\n");
  if (o.raw)
    fmt::print("  raw MPI_Alltoall of {} B per rank: median {}\n", o.raw_bytes_per_rank, human_s(o.raw->median_s));
  fmt::print("  workspace: plan {} B, allocated {} B (max over ranks); received (max rank) {} B\n",
             plan.stats.workspace_bytes, o.workspace_peak, plan.stats.bytes_recv_max);
}

int run(const RunArgs& a, const Inputs& in, int rank) {
  Context ctx(in.mesh, MPI_COMM_WORLD, in.opts);
  if (!ctx.participates()) return 0;  // ranks beyond the mesh sit this out
  std::shared_ptr<const Plan> plan = ctx.plan(in.src, in.dst);
  std::string explained;
#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
  Outcome o = a.backend == "nccl" ? execute_nccl(a, in, ctx, *plan, explained) : execute(a, in, ctx, *plan);
#else
  Outcome o = execute(a, in, ctx, *plan);
#endif
  if (a.backend != "nccl") explained = ctx.executor()->explain(*plan);
  (void)rank;
  if (ctx.device() == 0) {  // the mesh's first device reports (it need not be world rank 0)
    if (a.json) fmt::print("{}\n", to_json(*plan, o, in.mesh.num_devices(), a.backend).dump(2));
    else print_readable(*plan, o, in.mesh.num_devices(), explained, a.backend);
  }
  if (o.mismatches && *o.mismatches) {
    if (ctx.device() == 0) fmt::print(stderr, "reshard run: check failed: {} elements differ\n", *o.mismatches);
    return 1;
  }
  return 0;
}

}  // namespace

Runner add_run_command(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* sub = app.add_subcommand("run", "Execute a resharding plan across MPI ranks (under mpirun)");
  sub->add_option("--mesh", a->mesh, "Device mesh, e.g. x=2,y=4 (the first ranks are its devices) or x=2,y=2@4-7");
  sub->add_option("--from", a->from, "Source type, e.g. f32[1024{x},64]");
  sub->add_option("--to", a->to, "Target type");
  add_cross_mesh_options(sub, a->x);
  sub->add_flag("--compare", a->x.compare, "--to-mesh/--batch: also time single calls, one raw MPI_Alltoallv and gather+scatter");
  sub->add_option("--backend", a->backend, "mpi (host buffers) or nccl")->check(CLI::IsMember({"mpi", "nccl"}));
  sub->add_option("--fill", a->fill, "Source contents: index (docs/design.md 5) or zero")->check(CLI::IsMember({"index", "zero"}));
  sub->add_flag("--check", a->check, "Verify every rank's target shard (implies --fill index)");
  sub->add_option("--dump", a->dump, "Write each rank's target shard to DIR/rank<r>.bin");
  sub->add_option("--iters", a->iters, "Time N executions after the first")->check(CLI::NonNegativeNumber);
  sub->add_flag("--json", a->json, "Print one JSON object (rank 0)");
  sub->add_flag("--raw-alltoall", a->raw_alltoall, "Also time one MPI_Alltoall of the source shard's bytes");
  sub->add_option("--topology", a->topology, "Per-axis links for the cost model, e.g. tp=nvlink,dp=ib");
  sub->add_option("--strategy", a->strategy, "reshard, naive, greedy_per_axis, dtensor or exchange");
  return [a]() -> int {
    MpiSession mpi;
    if (!a->x.to_mesh.empty() || !a->x.batch.empty() || a->x.memory_cap || a->x.compare) {
      XRunArgs x = a->x;
      x.mesh = a->mesh, x.from = a->from, x.to = a->to, x.fill = a->fill, x.dump = a->dump;
      x.check = a->check, x.json = a->json, x.iters = a->iters;
      if (a->backend != "mpi" || a->raw_alltoall || !a->topology.empty() || a->strategy != "reshard")
        abort_all("run", mpi.rank(), "--to-mesh/--batch run on MPI host buffers; leave out --backend, --raw-alltoall, "
                                     "--topology and --strategy");
      return run_cross(x, mpi.rank(), mpi.size());
    }
    if (a->mesh.empty() || a->from.empty() || a->to.empty())
      abort_all("run", mpi.rank(), "--mesh, --from and --to are required (or --batch FILE)");
    Inputs in = parse_or_abort(*a, mpi.rank());
    try {
      return run(*a, in, mpi.rank());
    } catch (const std::exception& e) {
      abort_all("run", mpi.rank(), e.what());
    }
  };
}

}  // namespace reshard::cli
