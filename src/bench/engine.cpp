// The engine of `reshard bench` (docs/design.md 5): every case of a suite under every strategy, on the same
// executor, timed, verified, and reported as a table (stdout, rank 0), JSON, CSV and SVG.
//
// Strategies: reshard, naive, greedy_per_axis and exchange are ordinary plans (synthesize()
// with SynthOptions::strategy) run by one Executor, so that only the plan differs; raw is one
// plain MPI call (raw.hpp). A case with a target mesh (the fifth field) and, with --batch,
// each run of lines on the same pair of meshes (as `run --batch` groups a file) is a batched
// case: the batched plan against single calls, raw MPI_Alltoallv and gather-then-scatter
// (xbench.hpp), after the ordinary cases. A case whose mesh has fewer devices than the world runs on
// the first ranks (the others wait for the next case); a larger one is skipped with a note.
//
// Timing: each strategy is warmed up, then the strategies of a case are timed in interleaved
// rounds, in a shuffled order each round (bench.hpp). A strategy whose plan is step for step another's is timed once. When
// mpirun puts more ranks on the node than it has CPUs, ranks yield while they wait
// (yield_when_oversubscribed()). The executor checks the plan's agreement on its first call
// only (--check-every-call: on every call, as ExecOptions' default does).
//
// Errors: arguments, the suite and every case are checked on every rank before anything runs;
// the ranks agree on the outcome (one all-reduce) and all exit 2 with the first failing rank's
// message. Any failure later (an MPI call, an executor error) prints and ends in MPI_Abort, so
// that no rank is left waiting. Rows that fail their check do not stop the run; the exit code
// is then 1.
#include <unistd.h>

#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "bandwidth.hpp"
#include "bench.hpp"
#include "raw.hpp"
#include "xbench.hpp"
#include "engine.hpp"
#include "mpi_session.hpp"
#include "reshard/context.hpp"
#include "reshard/error.hpp"
#include "reshard/xcontext.hpp"
#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
#include "device_timing.hpp"
#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/nccl.hpp"
#endif

namespace reshard::bench {

namespace {

// A batched or cross-mesh case: arrays on one pair of meshes (xbench.hpp).
struct XCase {
  Case spec;  // named after the batch; mesh and to_mesh are the pair
  Mesh src_mesh, dst_mesh;
  std::vector<XArray> arrays;
};

// What every rank checked before running: the cases to run, parsed.
struct Prepared {
  Sweep sweep;
  std::vector<std::string> strategies;
  std::vector<Case> cases;
  std::vector<XCase> xcases;
  SynthOptions opts;
};

// Adds line `c` (a target mesh in its fifth field, or any line under --batch) to the batched
// cases: with --batch to the open batch when it is on the same pair of meshes, else as a case
// of its own.
void add_x_line(const Case& c, bool batch, bool& open, std::vector<XCase>& out) {
  Mesh sm = Mesh::parse(c.mesh);
  Mesh dm = c.to_mesh.empty() ? sm : Mesh::parse(c.to_mesh);
  XArray a{c.name, Type::parse(c.from, sm.without_ranks()), Type::parse(c.to, dm.without_ranks())};
  check_compatible(sm, dm, a);
  if (batch && open && out.back().src_mesh == sm && out.back().dst_mesh == dm) {
    XCase& x = out.back();
    for (const XArray& o : x.arrays)
      if (o.name == a.name) throw Error(fmt::format("array '{}' appears twice in the batch", a.name));
    x.arrays.push_back(std::move(a));
    x.spec.name = fmt::format("{}..{}", x.arrays.front().name, x.arrays.back().name);
    x.spec.from = fmt::format("{} arrays", x.arrays.size());
    x.spec.to = fmt::format("{} arrays", x.arrays.size());
    return;
  }
  XCase x;
  x.spec = c;
  x.spec.mesh = sm.to_string();
  x.spec.to_mesh = dm.to_string();
  x.src_mesh = std::move(sm);
  x.dst_mesh = std::move(dm);
  x.arrays.push_back(std::move(a));
  out.push_back(std::move(x));
  open = batch;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string case_error(const Case& c, const std::exception& e) {
  return fmt::format("case {} (line {}): {}", c.name, c.line, e.what());
}

Prepared prepare(const Options& a, int rank) {
  Prepared p;
  p.strategies = split_list(a.strategies);
  if (p.strategies.empty()) throw Error("--strategies: the list is empty");
  std::set<std::string> seen;
  for (const std::string& s : p.strategies) {
    if (std::find(std::begin(kStrategies), std::end(kStrategies), s) == std::end(kStrategies))
      throw Error(fmt::format("--strategies: unknown strategy '{}' (known: {})", s, fmt::join(kStrategies, ", ")));
    if (!seen.insert(s).second) throw Error(fmt::format("--strategies: '{}' is listed twice", s));
  }
  if (!a.topology.empty()) p.opts.topology = Topology::parse(a.topology);
  if (!a.min_size.empty() || !a.max_size.empty()) {
    if (a.min_size.empty() || a.max_size.empty()) throw Error("-b and -e go together: the smallest and the largest size");
    p.sweep.min_bytes = parse_size(a.min_size);
    p.sweep.max_bytes = parse_size(a.max_size);
    p.sweep.factor = a.factor;
    sweep_sizes(p.sweep);  // checks them before any case
  }
  if (!a.dtype.empty()) {
    p.sweep.dtype = dtype_from_name(a.dtype);
    if (!p.sweep.dtype) throw Error(fmt::format("-d {}: unknown element type (f64, f32, f16, bf16, i64, i32, i16, i8, u8)", a.dtype));
  }
#if !(defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL)
  if (a.backend == "nccl")
    throw Error("--backend nccl: this build has no NCCL backend (it needs CUDA, NCCL and MPI at configure "
                "time, and RESHARD_WITH_NCCL not OFF); use --backend mpi");
#endif
  std::vector<Case> all = read_cases(a.suite);
  std::vector<std::string> wanted = split_list(a.cases);
  for (const std::string& w : wanted)
    if (std::none_of(all.begin(), all.end(), [&](const Case& c) { return c.name == w; }))
      throw Error(fmt::format("--cases: no case named '{}' in {}", w, a.suite));
  bool open = false;  // --batch: the last batched case takes the next line on its meshes
  for (const Case& c : all) {
    if (!wanted.empty() && std::find(wanted.begin(), wanted.end(), c.name) == wanted.end()) continue;
    if (a.batch || !c.to_mesh.empty()) {
      try {
        if (p.sweep.min_bytes > 0 || p.sweep.dtype)
          throw Error("-b/-e/-d apply to ordinary cases, not to batched or cross-mesh ones");
        if (a.backend != "mpi") throw Error("batched and cross-mesh cases run on --backend mpi only");
        add_x_line(c, a.batch, open, p.xcases);
      } catch (const std::exception& e) {
        throw Error(case_error(c, e));
      }
      continue;
    }
    open = false;
    try {
      Mesh mesh = Mesh::parse(c.mesh);
      check_compatible(mesh, Type::parse(c.from, mesh), Type::parse(c.to, mesh));
    } catch (const std::exception& e) {
      throw Error(case_error(c, e));
    }
    try {
      for (Case& k : expand_case(c, p.sweep)) p.cases.push_back(std::move(k));
    } catch (const std::exception& e) {
      throw Error(case_error(c, e));
    }
  }
  if (p.cases.empty() && p.xcases.empty()) throw Error(fmt::format("{} has no cases to run", a.suite));
  // One topology serves every case: an axis no case's mesh has is a typo, not a link.
  for (const std::string& axis : p.opts.topology.axes())
    if (std::none_of(p.cases.begin(), p.cases.end(), [&](const Case& c) { return Mesh::parse(c.mesh).axis_index(axis) >= 0; }))
      throw Error(fmt::format("--topology: '{}' is not an axis of any mesh in {}", axis, a.suite));
  if (rank == 0)  // fail now rather than after the whole run
    for (const std::string& path : {a.json, a.csv, a.svg}) {
      if (path.empty()) continue;
      std::filesystem::path parent = std::filesystem::path(path).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent);
      if (!std::ofstream(path, std::ios::app)) throw Error(fmt::format("cannot write {}", path));
    }
  return p;
}

// Every rank prepares; if any fails, all learn it (one all-reduce) and the first failing rank
// prints why. Returns nullopt then (every rank exits 2).
std::optional<Prepared> prepare_agreed(const Options& a, const MpiSession& mpi) {
  std::optional<Prepared> p;
  std::string err;
  try {
    p = prepare(a, mpi.rank());
  } catch (const std::exception& e) {
    err = e.what();
  }
  std::int64_t first_bad = reduce_all(MPI_COMM_WORLD, err.empty() ? INT_MAX : mpi.rank(), MPI_MIN);
  if (first_bad == INT_MAX) return p;
  if (first_bad == mpi.rank()) fmt::print(stderr, "reshard bench: error (rank {}): {}\n", mpi.rank(), err);
  return std::nullopt;
}

// Progress on rank 0's stderr, one line per case as it starts: "[3/40] b_merge (5 strategies)".
// On a terminal the line is rewritten in place and cleared before the case's rows print; under
// mpirun (stderr a pipe) each is a line of its own, flushed, so that mpirun forwards it at once.
class Progress {
 public:
  Progress(bool on, int total) : on_(on), tty_(on && isatty(STDERR_FILENO)), total_(total) {}
  ~Progress() { clear(); }
  void next(const std::string& what) {
    if (!on_) return;
    ++done_;
    if (tty_) fmt::print(stderr, "\r\033[K[{}/{}] {}", done_, total_, what);
    else fmt::print(stderr, "reshard bench: [{}/{}] {}\n", done_, total_, what);
    std::fflush(stderr);
  }
  void clear() {
    if (tty_) fmt::print(stderr, "\r\033[K"), std::fflush(stderr);
  }

 private:
  bool on_, tty_;
  int total_, done_ = 0;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) {
    line.erase(0, line.find_first_not_of(' '));
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::string step_name(const Step& s) {
  return s.axes.empty() ? std::string(name_of(s.op)) : fmt::format("{}{{{}}}", s.op, fmt::join(s.axes, ","));
}

// One plan on the Context's executor, warmed up. Its check, after timing, runs it once more
// into a poisoned output and compares the target with the index fill (pending reductions
// reduced over their group first), and the input with a fresh fill (the executor must not
// write it). ctx and plan must outlive the contender.
Contender plan_contender(Context& ctx, const Plan& plan, const Timing& timing) {
  struct Buffers {
    Bytes src, dst;
  };
  auto b = std::make_shared<Buffers>();
  b->src.resize(static_cast<std::size_t>(ctx.local_bytes(plan.src)));
  b->dst.resize(static_cast<std::size_t>(ctx.local_bytes(plan.dst)));
  ctx.fill_index(plan.src, b->src.data());
  Contender c;
  c.once = [b, &ctx, &plan] { ctx.reshard(plan, b->src.data(), b->src.size(), b->dst.data(), b->dst.size()); };
  c.refresh = [b] {
    b->src = Bytes(b->src);
    b->dst = Bytes(b->dst);
  };
  c.row.strategy = plan.strategy;
  for (const Step& s : plan.steps) c.row.steps.push_back(step_name(s));
  c.row.check = "target";
  c.row.notes = plan.notes;
  warm_up(ctx.comm(), timing, c);
  c.row.calls = lines_of(ctx.executor()->explain(plan));
  c.finish = [b, &ctx, &plan, once = c.once](Row& row) {
    const MPI_Comm comm = ctx.comm();
    std::fill(b->dst.begin(), b->dst.end(), std::byte{0xff});
    once();
    row.mismatches = ctx.count_index_mismatches(plan.dst, b->dst.data(), b->dst.size(), &plan.src);
    Bytes fresh(b->src.size());
    ctx.fill_index(plan.src, fresh.data());
    const bool input_kept = reduce_all(comm, fresh != b->src, MPI_SUM) == 0;
    if (!input_kept) row.notes.push_back("the executor wrote into its input buffer");
    row.verified = row.mismatches == 0 && input_kept;
    const std::int64_t workspace = ctx.executor()->workspace_bytes(plan);
    row.bytes_recv_max = plan.stats.bytes_recv_max;
    row.workspace_bytes = reduce_all(comm, workspace, MPI_MAX);
    row.peak_bytes = reduce_all(comm, static_cast<std::int64_t>(b->src.size() + b->dst.size()) + workspace, MPI_MAX);
  };
  return c;
}

#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
// --backend nccl: one NCCL communicator per mesh (made on first use over the case's Context
// communicator, then reused: a mesh's devices are always the first ranks), on a stream of its own.
struct DeviceSession {
  void* stream = stream_create();
  std::unique_ptr<NcclCommunicator> comm;
  DeviceSession(MPI_Comm devices, const Mesh& mesh) { comm = make_nccl_communicator(devices, mesh, stream); }
  ~DeviceSession() {
    comm.reset();
    stream_destroy(stream);
  }
};

// plan_contender on device buffers over NCCL: the same plan on `exec` (an executor of the
// session's communicator, Memory::device), filled and checked on the device, timed with CUDA
// events. Its check runs the plan once more into a poisoned output.
Contender device_plan_contender(DeviceSession& dev, Executor& exec, Context& ctx, const Plan& plan,
                                const Timing& timing) {
  struct Buffers {
    DeviceBytes src, dst;
  };
  const int me = ctx.device();
  auto b = std::make_shared<Buffers>();
  b->src = DeviceBytes(static_cast<std::size_t>(ctx.local_bytes(plan.src)), DeviceBytes::Kind::device);
  b->dst = DeviceBytes(static_cast<std::size_t>(ctx.local_bytes(plan.dst)), DeviceBytes::Kind::device);
  device_fill_index(b->src.get(), plan.src, plan.mesh, me, dev.stream);
  Contender c;
  c.once = [b, &exec, &plan] { exec.execute(plan, b->src.get(), b->src.size(), b->dst.get(), b->dst.size()); };
  c.time_once = [&ctx, &dev, once = c.once] {
    return time_device_iterations(ctx.comm(), *dev.comm, dev.stream, 1, once).front();
  };
  c.refresh = [] {};
  c.row.strategy = plan.strategy;
  for (const Step& s : plan.steps) c.row.steps.push_back(step_name(s));
  c.row.check = "target";
  c.row.notes = plan.notes;
  warm_up(ctx.comm(), timing, c);
  c.row.calls = lines_of(exec.explain(plan));
  c.finish = [b, &ctx, &plan, &exec, &dev, me, once = c.once](Row& row) {
    const MPI_Comm comm = ctx.comm();
    memset_async(b->dst.get(), 0xff, b->dst.size(), dev.stream);
    once();
    auto download = [&](const DeviceBytes& d) {
      std::vector<std::byte> h(d.size());
      memcpy_async(h.data(), d.get(), d.size(), dev.stream);
      dev.comm->synchronize();
      return h;
    };
    if (plan.dst.op == ReduceOp::none)
      row.mismatches =
          reduce_all(comm, device_check_index(b->dst.get(), plan.dst, plan.mesh, me, dev.stream, &plan.src), MPI_SUM);
    else {
      std::vector<std::byte> h = download(b->dst);
      row.mismatches = ctx.count_index_mismatches(plan.dst, h.data(), h.size(), &plan.src);
    }
    DeviceBytes fresh(b->src.size(), DeviceBytes::Kind::device);
    device_fill_index(fresh.get(), plan.src, plan.mesh, me, dev.stream);
    const bool input_kept = reduce_all(comm, download(fresh) != download(b->src), MPI_SUM) == 0;
    if (!input_kept) row.notes.push_back("the executor wrote into its input buffer");
    row.verified = row.mismatches == 0 && input_kept;
    const std::int64_t workspace = exec.workspace_bytes(plan);
    row.bytes_recv_max = plan.stats.bytes_recv_max;
    row.workspace_bytes = reduce_all(comm, workspace, MPI_MAX);
    row.peak_bytes = reduce_all(comm, static_cast<std::int64_t>(b->src.size() + b->dst.size()) + workspace, MPI_MAX);
  };
  return c;
}
#else
struct DeviceSession {};
#endif

using DeviceSessions = std::map<std::string, std::unique_ptr<DeviceSession>>;

bool same_steps(const Plan& a, const Plan& b) {
  if (a.steps.size() != b.steps.size()) return false;
  for (std::size_t k = 0; k < a.steps.size(); ++k)
    if (to_string(a.steps[k]) != to_string(b.steps[k])) return false;
  return true;
}

CaseResult run_case(const Case& c, const Prepared& p, const Options& a, const MpiSession& mpi, Progress& progress,
                    DeviceSessions& sessions) {
  CaseResult r;
  r.spec = c;
  Mesh mesh = Mesh::parse(c.mesh);
  r.devices = mesh.num_devices();
  if (r.devices > mpi.size()) {
    r.notes.push_back(fmt::format("skipped: mesh {} has {} devices, the world has {} ranks", mesh, r.devices, mpi.size()));
    progress.next(fmt::format("{} (skipped)", c.name));
    return r;
  }
  const Type src = Type::parse(c.from, mesh), dst = Type::parse(c.to, mesh);
  SynthOptions opts = p.opts;
  std::vector<Plan> plans;  // stable: contenders refer to them
  plans.reserve(p.strategies.size() + 1);  // the reshard plan, even when not timed
  plans.push_back(synthesize(mesh, src, dst, opts));
  const Plan& reshard_plan = plans.front();
  const PlanStats& st = reshard_plan.stats;
  r.size_bytes = size_bytes(st);  // bandwidth.hpp: the definitions `run` uses too
  r.bus_factor = bus_factor(st);
  if (r.devices < mpi.size()) r.notes.push_back(fmt::format("runs on the first {} of {} ranks", r.devices, mpi.size()));

  ExecOptions exec;
  exec.check_every_call = a.check_every_call;
  // Ranks beyond the last case's mesh have waited for it since it started, possibly longer than
  // the executor's timeout ($RESHARD_TIMEOUT_S): they wait here, unwatched, not in the watched
  // agreement of the Context (a participant that hangs is reported by the others' watchdogs).
  if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) throw Error("MPI_Barrier failed");
  Context ctx(mesh, MPI_COMM_WORLD, opts, exec);  // collective over the world
  progress.next(fmt::format("{} (S {}, {} strategies)", c.name, size_label(r.size_bytes), p.strategies.size()));
  if (!ctx.participates()) return r;
  r.ran = true;
  const bool device = a.backend == "nccl";
#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
  std::unique_ptr<DeviceSession>& dev = sessions[mesh.to_string()];
  if (device && !dev) dev = std::make_unique<DeviceSession>(ctx.comm(), mesh);
  std::unique_ptr<Executor> dev_exec;  // this case's executor on device buffers (its workspace ends with the case)
  if (device) {
    ExecOptions eo = exec;
    eo.memory = Memory::device;
    dev_exec = std::make_unique<Executor>(*dev->comm, eo);
  }
#else
  (void)sessions;
#endif
  // A strategy whose plan is step for step one already made (greedy_per_axis often is the
  // reshard plan) runs exactly the same calls: it is timed once and shares the figures.
  std::vector<Contender> cs;
  std::vector<const Plan*> timed;  // per contender; null for raw
  struct Slot {
    std::string strategy;
    std::size_t contender;
    const Plan* plan;
  };
  std::vector<Slot> slots;
  for (const std::string& s : p.strategies) {
    if (s == "raw" && device) {
      r.notes.push_back("raw: one MPI call on host buffers, not run with --backend nccl");
      continue;
    }
    if (s == "raw") {
      std::string why;
      if (auto call = raw_call_for(reshard_plan, why)) {
        cs.push_back(raw_contender(ctx, reshard_plan, *call, a.timing));
        timed.push_back(nullptr);
        slots.push_back({s, cs.size() - 1, nullptr});
      } else {
        r.notes.push_back(why);
      }
      continue;
    }
    opts.strategy = strategy_from_name(s);
    const Plan& plan = s == "reshard" ? reshard_plan : plans.emplace_back(synthesize(mesh, src, dst, opts));
    auto same = std::find_if(timed.begin(), timed.end(), [&](const Plan* q) { return q && same_steps(*q, plan); });
    if (same != timed.end()) {
      slots.push_back({s, static_cast<std::size_t>(same - timed.begin()), &plan});
      continue;
    }
#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
    if (device) cs.push_back(device_plan_contender(*dev, *dev_exec, ctx, plan, a.timing));
    else cs.push_back(plan_contender(ctx, plan, a.timing));
#else
    cs.push_back(plan_contender(ctx, plan, a.timing));
#endif
    timed.push_back(&plan);
    slots.push_back({s, cs.size() - 1, &plan});
  }
  time_rounds(ctx.comm(), a.timing.iters, cs);
  for (Contender& k : cs) {
    k.row.time = stats_of(k.row.times);
    k.finish(k.row);
  }
  for (const Slot& slot : slots) {
    Row row = cs[slot.contender].row;
    if (row.strategy != slot.strategy) {
      row.same_plan_as = row.strategy;
      row.strategy = slot.strategy;
      row.notes = slot.plan->notes;
      row.notes.push_back(fmt::format("the same plan as {}, step for step: timed once, figures shared", row.same_plan_as));
    }
    r.rows.push_back(std::move(row));
  }
  return r;
}

// A batched or cross-mesh case over the whole world (ranks beyond both meshes take part in
// the baselines' collectives with nothing to move): the four contenders of xbench.hpp.
CaseResult run_x_case(const XCase& c, const Options& a, const MpiSession& mpi, Progress& progress) {
  CaseResult r;
  r.spec = c.spec;
  r.arrays = static_cast<int>(c.arrays.size());
  const int world = std::max(c.src_mesh.ranks_needed(), c.dst_mesh.ranks_needed());
  r.devices = world;
  if (world > mpi.size()) {
    r.notes.push_back(fmt::format("skipped: meshes {} and {} need {} ranks, the world has {}", c.src_mesh, c.dst_mesh,
                                  world, mpi.size()));
    progress.next(fmt::format("{} (skipped)", c.spec.name));
    return r;
  }
  if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) throw Error("MPI_Barrier failed");
  ExecOptions exec;
  exec.check_every_call = a.check_every_call;  // as for the ordinary cases (and their single calls)
  XContext x(c.src_mesh, c.dst_mesh, MPI_COMM_WORLD, {}, exec);  // collective over the world
  std::shared_ptr<const XPlan> plan = x.plan(c.arrays);
  // S: the largest per-rank total of source or target shards; F: the lower bound over S.
  const Mesh sm = c.src_mesh.without_ranks(), dm = c.dst_mesh.without_ranks();
  for (int rank = 0; rank < world; ++rank) {
    std::int64_t in = 0, out = 0;
    const int s = c.src_mesh.device_of(rank), t = c.dst_mesh.device_of(rank);
    for (const XArray& arr : c.arrays) {
      if (s >= 0) in += arr.src.local_bytes(sm, s);
      if (t >= 0) out += arr.dst.local_bytes(dm, t);
    }
    r.size_bytes = std::max({r.size_bytes, in, out});
  }
  r.bus_factor = r.size_bytes ? static_cast<double>(plan->stats.lower_bound_bytes) / static_cast<double>(r.size_bytes) : 0;
  if (plan->stats.bytes_recv_max != plan->stats.lower_bound_bytes)
    r.notes.push_back(fmt::format("the plan receives {} B on its busiest rank, above the lower bound of {} B",
                                  plan->stats.bytes_recv_max, plan->stats.lower_bound_bytes));
  progress.next(fmt::format("{} ({} arrays, S {}, {} strategies)", c.spec.name, c.arrays.size(),
                            size_label(r.size_bytes), std::size(kXStrategies)));
  r.ran = true;
  XBuffers b = x_buffers(x, *plan, true);
  r.rows = x_compare(x, *plan, b, std::vector<std::string>(std::begin(kXStrategies), std::end(kXStrategies)), a.timing);
  return r;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  if (!f) throw Error(fmt::format("cannot write {}", path));
}

// Replaces `path` by `text` in one step (a temporary file renamed over it), so that a reader, or
// a run that is killed, never sees half a file: the JSON is valid after every case.
void replace_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  write_file(tmp, text);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw Error(fmt::format("cannot write {}: {}", path, ec.message()));
}

void append_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::app);
  f << text;
  if (!f) throw Error(fmt::format("cannot write {}", path));
}

int run(const Options& a, const Prepared& p, const MpiSession& mpi, bool yields) {
  Report rep;
  rep.suite = a.suite;
  rep.topology = p.opts.topology.to_string();
  rep.ranks = mpi.size();
  rep.iters = a.timing.iters;
  rep.warmup = a.timing.warmup;
  rep.check_every_call = a.check_every_call;
  rep.yield_when_idle = yields;
  rep.strategies = p.strategies;
  if (!p.xcases.empty())
    for (const char* s : kXStrategies)
      if (std::find(rep.strategies.begin(), rep.strategies.end(), s) == rep.strategies.end()) rep.strategies.push_back(s);
  rep.backend = a.backend;
  rep.sweep = p.sweep;
  const bool lead = mpi.rank() == 0;
  DeviceSessions sessions;  // --backend nccl: NCCL communicators by mesh, freed at the end (collective)
#if defined(RESHARD_HAVE_NCCL) && RESHARD_HAVE_NCCL
  if (a.backend == "nccl") select_local_cuda_device(MPI_COMM_WORLD);
#endif
  Progress progress(lead, static_cast<int>(p.cases.size() + p.xcases.size()));
  if (lead) {
    fmt::print("{}", table_header(rep)), std::fflush(stdout);
    if (!a.csv.empty()) write_file(a.csv, csv_header());
  }
  auto report = [&] {
    const CaseResult& done = rep.cases.back();
    std::string text = table_case(done);
    if (a.explain)
      for (const Row& row : done.rows)
        for (const std::string& line : row.calls) text += fmt::format("    {:<16} {}\n", row.strategy, line);
    progress.clear();
    fmt::print("{}", text), std::fflush(stdout);
    // Results so far, as each case finishes: CSV rows appended, the JSON (summary so far) replaced.
    if (!a.csv.empty()) append_file(a.csv, csv_rows(done));
    if (!a.json.empty()) replace_file(a.json, to_json(rep, summarize(rep)).dump(2) + "\n");
  };
  for (const Case& c : p.cases) {
    rep.cases.push_back(run_case(c, p, a, mpi, progress, sessions));
    if (lead) report();
  }
  for (const XCase& c : p.xcases) {
    rep.cases.push_back(run_x_case(c, a, mpi, progress));
    if (lead) report();
  }
  if (!lead) return 0;
  const Summary sum = summarize(rep);
  fmt::print("{}", table_summary(rep, sum));
  if (!a.json.empty()) replace_file(a.json, to_json(rep, sum).dump(2) + "\n");
  if (!a.svg.empty()) write_file(a.svg, to_svg(rep, sum));
  if (sum.rows_verified != sum.rows) {
    fmt::print(stderr, "reshard bench: {} of {} rows failed their check\n", sum.rows - sum.rows_verified, sum.rows);
    return 1;
  }
  return 0;
}

}  // namespace

int run_bench(const Options& a) {
  const bool yields = yield_when_oversubscribed();  // before MPI_Init
  MpiSession mpi;
  std::optional<Prepared> p = prepare_agreed(a, mpi);
  if (!p) return 2;
  try {
    return run(a, *p, mpi, yields);
  } catch (const std::exception& e) {
    abort_all("bench", mpi.rank(), e.what());
  }
}

}  // namespace reshard::bench
