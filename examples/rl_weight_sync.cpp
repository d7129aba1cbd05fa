// rl_weight_sync: RL post-training weight sync. A trainer holds a small transformer's weights
// in an FSDP x TP layout on the first half of the ranks; inference replicas (TP=2, or 1 on an
// odd count) serve on the other half. After every training step all weights move, in one
// batched cross-mesh reshard, from the trainer's layout to the inference layout, and every
// inference rank checks that it holds exactly the trainer's new weights.
//
//   mpirun -np 8 build/bin/rl_weight_sync                       # fsdp=2,tp=2@0-3 -> r=2,tp=2@4-7
//   mpirun -np 8 build/bin/rl_weight_sync --steps 20 --hidden 512 --overlap both
//
// With --overlap on the trainer snapshots its weights, starts the sync with reshard_async and
// computes the next step while it is in flight, calling test() between chunks of work; off
// waits for each sync before computing. `both` runs the two loops one after the other and
// prints the time per step of each (max over ranks of sync + compute; the check of every step
// is left out of it) and how long the trainer was blocked on the sync per step. Exits non-zero
// on any mismatch. docs/batched.md has measurements and why overlap gains little where ranks
// outnumber cores.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <mpi.h>

#include "reshard/error.hpp"
#include "reshard/xcontext.hpp"

namespace {

using reshard::Box;
using reshard::Mesh;
using reshard::Type;

struct Options {
  int steps = 6, layers = 2, hidden = 128, ffn = 512, vocab = 1000;
  int work = 2'000'000;  // multiply-adds of the simulated training step, per trainer rank
  std::string overlap = "both";
};

// A weight's value at global linear index i after `step` training steps: exact in f32.
float value(std::int64_t i, int step, int param) {
  return static_cast<float>((i * 7 + param * 13) % 1024) * 0.25f + static_cast<float>(step);
}

// Calls f(local index, global linear index) for every element of a dense row-major block, row
// by row (the verification of every step must not drown the timings it sits between).
template <class F>
void for_each_global(const Box& b, const std::vector<std::int64_t>& shape, F&& f) {
  const std::size_t n = b.dims.size();
  if (b.volume() == 0) return;
  if (n == 0) {
    f(0, 0);
    return;
  }
  const std::int64_t run = b.dims[n - 1].extent(), rows = b.volume() / run;
  std::vector<std::int64_t> at(n, 0);  // the row's index in the block (the last dim stays 0)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t g = 0;
    for (std::size_t d = 0; d < n; ++d) g = g * shape[d] + b.dims[d].lo + at[d];
    for (std::int64_t c = 0; c < run; ++c) f(r * run + c, g + c);
    for (std::size_t d = n - 1; d-- > 0;)
      if (++at[d] < b.dims[d].extent()) break;
      else at[d] = 0;
  }
}

struct Param {
  std::string name;
  Type train, infer;
};

// The trainer's and the inference engine's layouts of every weight (Megatron-style TP: QKV and
// W1 column-parallel, O and W2 row-parallel; FSDP shards the other dim).
std::vector<Param> model(const Options& o, const Mesh& tm, const Mesh& im) {
  std::vector<Param> ps;
  auto add = [&](std::string name, const std::string& t, const std::string& i) {
    ps.push_back({std::move(name), Type::parse(t, tm.without_ranks()), Type::parse(i, im.without_ranks())});
  };
  const int H = o.hidden, F = o.ffn, V = o.vocab;
  add("embed", fmt::format("f32[{}{{fsdp,tp}},{}]", V, H), fmt::format("f32[{}{{tp}},{}]", V, H));
  for (int l = 0; l < o.layers; ++l) {
    add(fmt::format("l{}.qkv", l), fmt::format("f32[{}{{fsdp}},{}{{tp}}]", H, 3 * H), fmt::format("f32[{},{}{{tp}}]", H, 3 * H));
    add(fmt::format("l{}.o", l), fmt::format("f32[{}{{tp}},{}{{fsdp}}]", H, H), fmt::format("f32[{}{{tp}},{}]", H, H));
    add(fmt::format("l{}.w1", l), fmt::format("f32[{}{{fsdp}},{}{{tp}}]", H, F), fmt::format("f32[{},{}{{tp}}]", H, F));
    add(fmt::format("l{}.w2", l), fmt::format("f32[{}{{tp}},{}{{fsdp}}]", F, H), fmt::format("f32[{}{{tp}},{}]", F, H));
    add(fmt::format("l{}.ln", l), fmt::format("f32[{}{{fsdp,tp}}]", H), fmt::format("f32[{}]", H));
  }
  return ps;
}

// The simulated training step's arithmetic; calls `poll` every chunk (to progress a sync).
template <class P>
double compute(int work, P&& poll) {
  double acc = 0;
  for (int done = 0; done < work;) {
    const int chunk = std::min(work - done, 50'000);
    for (int k = 0; k < chunk; ++k) acc = acc * 0.999999 + static_cast<double>(k & 7);
    done += chunk;
    poll();
  }
  return acc;
}

struct Loop {
  double per_step_s = 0;  // max over ranks of (sync + training compute) per step, checks excluded
  double exposed_s = 0;   // max over trainer ranks of the time per step spent waiting for the sync
  long mismatches = 0;
};

Loop train(reshard::XContext& x, const reshard::XPlan& plan, const std::vector<Param>& ps, const Options& o, bool overlap) {
  const std::size_t n = ps.size();
  std::vector<std::vector<float>> w(n), snap(n), got(n);
  std::vector<reshard::ConstBuffer> in(n);
  std::vector<reshard::MutBuffer> out(n);
  for (std::size_t p = 0; p < n; ++p) {
    w[p].resize(static_cast<std::size_t>(x.src_context().local_elements(ps[p].train)));
    snap[p] = w[p];
    got[p].resize(static_cast<std::size_t>(x.dst_context().local_elements(ps[p].infer)));
    in[p] = {snap[p].data(), snap[p].size() * sizeof(float)};
    out[p] = {got[p].data(), got[p].size() * sizeof(float)};
  }
  auto step_weights = [&](int step) {  // the optimizer step: every element moves to value(i, step)
    for (std::size_t p = 0; p < n; ++p) {
      const auto shape = ps[p].train.global_shape();
      for_each_global(x.src_context().local_block(ps[p].train), shape,
                      [&](std::int64_t k, std::int64_t g) { w[p][k] = value(g, step, static_cast<int>(p)); });
    }
  };
  auto check = [&](int step) {
    long bad = 0;
    for (std::size_t p = 0; p < n; ++p) {
      const auto shape = ps[p].infer.global_shape();
      for_each_global(x.dst_context().local_block(ps[p].infer), shape, [&](std::int64_t k, std::int64_t g) {
        bad += got[p][k] != value(g, step, static_cast<int>(p));
      });
    }
    return bad;
  };
  Loop r;
  volatile double sink = 0;
  step_weights(0);
  MPI_Barrier(MPI_COMM_WORLD);
  const bool trainer = x.src_device() >= 0;
  double busy = 0, exposed = 0;  // this rank: sync and compute; time blocked in wait()
  for (int step = 0; step < o.steps; ++step) {
    const double t0 = MPI_Wtime();
    for (std::size_t p = 0; p < n; ++p) std::copy(w[p].begin(), w[p].end(), snap[p].begin());  // snapshot
    reshard::XHandle h = x.reshard_async(plan, in, out);
    double t_wait = MPI_Wtime();
    if (!overlap) h.wait();
    double waited = MPI_Wtime() - t_wait;
    // The trainer computes the next step (the inference side would serve; here it waits).
    if (trainer) sink = sink + compute(o.work, [&] { if (overlap) h.test(); });
    t_wait = MPI_Wtime();
    h.wait();
    waited += MPI_Wtime() - t_wait;
    if (trainer) step_weights(step + 1);
    busy += MPI_Wtime() - t0;
    exposed += trainer ? waited : 0;
    r.mismatches += check(step);  // outside the timed part: verification, not training
    MPI_Barrier(MPI_COMM_WORLD);  // steps start together, as a synchronous RL loop's do
  }
  double dt = busy / o.steps, slowest = 0, ex = exposed / o.steps, ex_max = 0;
  MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  MPI_Allreduce(&ex, &ex_max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  long total = 0;
  MPI_Allreduce(&r.mismatches, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  r.per_step_s = slowest;
  r.exposed_s = ex_max;
  r.mismatches = total;
  return r;
}

// `name=a,tp=b@lo-hi` over `count` ranks starting at `first`: TP 2 where the count is even.
Mesh mesh_on(const char* outer, int first, int count) {
  const int tp = count % 2 == 0 ? 2 : 1;
  return Mesh::parse(fmt::format("{}={},tp={}@{}-{}", outer, count / tp, tp, first, first + count - 1));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"RL weight sync: trainer (FSDP x TP) to inference replicas (TP) on disjoint ranks"};
  app.add_option("--steps", o.steps, "Training steps");
  app.add_option("--layers", o.layers, "Transformer layers");
  app.add_option("--hidden", o.hidden, "Hidden size");
  app.add_option("--ffn", o.ffn, "FFN size");
  app.add_option("--vocab", o.vocab, "Vocabulary (uneven splits are fine)");
  app.add_option("--work", o.work, "Multiply-adds of the simulated training step per trainer rank");
  app.add_option("--overlap", o.overlap, "on, off or both")->check(CLI::IsMember({"on", "off", "both"}));
  CLI11_PARSE(app, argc, argv);
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rc = 0;
  try {
    if (size < 2) throw reshard::Error("rl_weight_sync needs at least 2 ranks (trainer and inference are disjoint)");
    const int trainers = (size + 1) / 2;
    Mesh tm = mesh_on("fsdp", 0, trainers), im = mesh_on("r", trainers, size - trainers);
    reshard::XContext x(tm, im);
    std::vector<Param> ps = model(o, tm, im);
    std::vector<reshard::XArray> arrays;
    for (const Param& p : ps) arrays.push_back({p.name, p.train, p.infer});
    auto plan = x.plan(arrays);
    if (rank == 0)
      fmt::print("rl_weight_sync: trainer {} -> inference {}: {} weights, {} B received (max rank) = lower bound {} B, "
                 "{} messages (max rank), workspace {} B\n",
                 tm, im, arrays.size(), plan->stats.bytes_recv_max, plan->stats.lower_bound_bytes,
                 plan->stats.calls_max, plan->stats.workspace_bytes);
    if (plan->stats.bytes_recv_max != plan->stats.lower_bound_bytes) rc = 1;
    for (const char* mode : {"off", "on"}) {
      if (o.overlap != "both" && o.overlap != mode) continue;
      Loop l = train(x, *plan, ps, o, std::string(mode) == "on");
      if (rank == 0)
        fmt::print("  overlap {:3}: {:.3f} ms per step over {} steps (trainer blocked on the sync {:.3f} ms per step); "
                   "inference weights {}\n",
                   mode, l.per_step_s * 1e3, o.steps, l.exposed_s * 1e3,
                   l.mismatches ? fmt::format("WRONG ({} elements)", l.mismatches) : "exact every step");
      if (l.mismatches) rc = 1;
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "rl_weight_sync: error (rank {}): {}\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return rc;
}
