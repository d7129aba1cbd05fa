// `reshard bench` (docs/design.md 5): the command line of the benchmark engine (src/bench).
#include <memory>

#include "../bench/engine.hpp"
#include "commands.hpp"

namespace reshard::cli {

Runner add_bench_command(CLI::App& app) {
  auto a = std::make_shared<bench::Options>();
  CLI::App* sub = app.add_subcommand("bench", "Benchmark resharding strategies on a suite of cases (under mpirun)");
  sub->add_option("--suite", a->suite, "Case file: name | mesh | from | to [| to_mesh], one a line")->required();
  sub->add_flag("--batch", a->batch,
                "Lines on the same pair of meshes, one after another, form one batched case (as in run --batch); "
                "batched and cross-mesh cases run reshard, single_calls, raw_alltoallv and gather_scatter");
  sub->add_option("--strategies", a->strategies, "Comma list of reshard, naive, greedy_per_axis, dtensor, exchange, raw")
      ->capture_default_str();
  sub->add_option("--cases", a->cases, "Comma list of case names to run (default: all)");
  sub->add_option("-n,--iters", a->timing.iters, "Timed iterations per case and strategy")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  sub->add_option("-w,--warmup", a->timing.warmup, "Untimed iterations before them (the first is reported apart)")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  // nccl-tests' sweep: every case scaled along its largest dim to each size (src/bench/sweep.hpp).
  sub->add_option("-b,--minbytes", a->min_size, "Sweep: smallest per-rank size S, e.g. 1M (K, M, G: powers of 1024)");
  sub->add_option("-e,--maxbytes", a->max_size, "Sweep: largest per-rank size S, e.g. 64M");
  sub->add_option("-f,--stepfactor", a->factor, "Sweep: factor between sizes")->capture_default_str();
  sub->add_option("-d,--datatype", a->dtype, "Element type of every case: f64, f32, f16, bf16, i64, i32, i16, i8, u8");
  sub->add_option("--json", a->json, "Write the rows and the summary as JSON (rank 0)");
  sub->add_option("--csv", a->csv, "Write the rows as CSV (rank 0)");
  sub->add_option("--svg", a->svg, "Write a chart: speedups, bytes received and peak memory (rank 0)");
  sub->add_option("--topology", a->topology, "Per-axis links for the cost model, e.g. tp=nvlink,dp=ib");
  sub->add_option("--backend", a->backend, "mpi (host buffers) or nccl (device buffers, one GPU per rank)")
      ->check(CLI::IsMember({"mpi", "nccl"}))
      ->capture_default_str();
  sub->add_flag("--check-every-call", a->check_every_call,
                "Run the executor's plan agreement check (one small all-reduce) on every call, not only the first");
  sub->add_flag("--explain", a->explain, "Print how rank 0's executor runs each plan (Executor::explain)");
  return [a]() -> int { return bench::run_bench(*a); };
}

}  // namespace reshard::cli
