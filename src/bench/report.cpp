// Figures derived from the measurements (bandwidths, speedups, summary) and the table, JSON and
// CSV reports of `reshard bench` (bench.hpp has the definitions).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "bandwidth.hpp"
#include "bench.hpp"

namespace reshard::bench {

const Row* CaseResult::row(const std::string& strategy) const {
  for (const Row& r : rows)
    if (r.strategy == strategy) return &r;
  return nullptr;
}

double algbw_GBps(const CaseResult& c, const Row& r) { return bench::algbw_GBps(c.size_bytes, r.time.median_s); }
double busbw_GBps(const CaseResult& c, const Row& r) {
  return bench::busbw_GBps(c.size_bytes, c.bus_factor, r.time.median_s);
}

std::optional<double> reshard_speedup(const CaseResult& c, const Row& r) {
  const Row* base = c.row("reshard");
  if (!base || base->time.median_s <= 0) return std::nullopt;
  return r.time.median_s / base->time.median_s;
}

namespace {

// Linear interpolation between order statistics; v sorted, not empty.
double quantile(const std::vector<double>& v, double p) {
  const double at = p * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(at);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

}  // namespace

std::optional<Quartiles> paired_speedup(const CaseResult& c, const Row& r) {
  const Row* base = c.row("reshard");
  if (!base || base->times.size() != r.times.size() || r.times.empty()) return std::nullopt;
  std::vector<double> q;
  for (std::size_t i = 0; i < r.times.size(); ++i)
    if (base->times[i] > 0) q.push_back(r.times[i] / base->times[i]);
  if (q.empty()) return std::nullopt;
  std::sort(q.begin(), q.end());
  return Quartiles{quantile(q, 0.25), quantile(q, 0.5), quantile(q, 0.75)};
}

namespace {

double ratio(std::int64_t a, std::int64_t b) { return b ? static_cast<double>(a) / static_cast<double>(b) : 1.0; }

// Geometric mean, min and max of positive values with the case each came from.
struct Spread {
  double log_sum = 0, min = 0, max = 0;
  std::string min_case, max_case;
  int n = 0;
  void add(double v, const std::string& where) {
    if (n == 0 || v < min) min = v, min_case = where;
    if (n == 0 || v > max) max = v, max_case = where;
    log_sum += std::log(v);
    ++n;
  }
  double geomean() const { return n ? std::exp(log_sum / n) : 0.0; }
};

Versus versus(const Report& rep, const std::string& other) {
  Spread time, peak;
  Versus v;
  v.other = other;
  for (const CaseResult& c : rep.cases) {
    const Row *mine = c.row("reshard"), *theirs = c.row(other);
    if (!mine || !theirs || mine->time.median_s <= 0 || theirs->time.median_s <= 0) continue;
    const double s = theirs->time.median_s / mine->time.median_s;
    time.add(s, c.spec.name);
    if (s * kSlowerTolerance < 1.0) {
      v.slower.push_back(c.spec.name);
      if (auto p = paired_speedup(c, *theirs); p && p->q3 < 1.0) v.slower_consistently.push_back(c.spec.name);
    }
    if (mine->peak_bytes > 0 && theirs->peak_bytes > 0) peak.add(ratio(theirs->peak_bytes, mine->peak_bytes), c.spec.name);
  }
  v.cases = time.n;
  v.geomean = time.geomean(), v.min = time.min, v.max = time.max;
  v.min_case = time.min_case, v.max_case = time.max_case;
  v.peak_geomean = peak.geomean(), v.peak_min = peak.min, v.peak_max = peak.max;
  v.peak_min_case = peak.min_case;
  return v;
}

std::string human_bytes(std::int64_t bytes) {
  const auto b = static_cast<double>(bytes);
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < (1 << 20)) return fmt::format("{:.1f} KiB", b / 1024);
  if (bytes < (1 << 30)) return fmt::format("{:.2f} MiB", b / (1 << 20));
  return fmt::format("{:.2f} GiB", b / (1 << 30));
}
std::string ms(double s) { return fmt::format("{:.4g}", s * 1e3); }

std::string list_or_none(const std::vector<std::string>& v) { return v.empty() ? "none" : fmt::format("{}", fmt::join(v, ", ")); }

nlohmann::json row_json(const CaseResult& c, const Row& r) {
  nlohmann::json j = {{"case", c.spec.name},
                      {"mesh", c.spec.mesh},
                      {"from", c.spec.from},
                      {"to", c.spec.to},
                      {"devices", c.devices},
                      {"strategy", r.strategy},
                      {"steps", r.steps},
                      {"calls", r.calls},
                      {"iters", r.time.iters},
                      {"time_median_s", r.time.median_s},
                      {"time_min_s", r.time.min_s},
                      {"time_max_s", r.time.max_s},
                      {"first_call_s", r.first_call_s},
                      {"bytes_recv_max", r.bytes_recv_max},
                      {"peak_bytes", r.peak_bytes},
                      {"workspace_bytes", r.workspace_bytes},
                      {"size_bytes", c.size_bytes},
                      {"algbw_GBps", algbw_GBps(c, r)},
                      {"busbw_GBps", busbw_GBps(c, r)},
                      {"verified", r.verified},
                      {"check", r.check},
                      {"mismatches", r.mismatches},
                      {"wrong", r.mismatches},
                      {"notes", r.notes}};
  if (!c.spec.to_mesh.empty()) j["to_mesh"] = c.spec.to_mesh;
  if (c.arrays > 1) j["arrays"] = c.arrays;
  if (r.output_is_target) j["output_is_target"] = *r.output_is_target;
  if (!r.same_plan_as.empty()) j["same_plan_as"] = r.same_plan_as;
  if (r.strategy == "reshard") {
    nlohmann::json vs = nlohmann::json::object();
    for (const Row& o : c.rows)
      if (o.strategy != "reshard")
        if (auto s = reshard_speedup(c, o)) vs[o.strategy] = *s;
    j["speedup_vs"] = vs;
  } else if (auto s = reshard_speedup(c, r)) {
    j["reshard_speedup"] = *s;
    if (auto p = paired_speedup(c, r)) j["reshard_speedup_paired"] = {{"q1", p->q1}, {"median", p->median}, {"q3", p->q3}};
  }
  j["times_s"] = r.times;
  return j;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

}  // namespace

Summary summarize(const Report& rep) {
  Summary s;
  for (const CaseResult& c : rep.cases) {
    (c.ran ? s.cases_run : s.cases_skipped)++;
    for (const Row& r : c.rows) s.rows++, s.rows_verified += r.verified;
    const Row *mine = c.row("reshard"), *naive = c.row("naive");
    if (mine && naive && mine->peak_bytes > naive->peak_bytes) s.reshard_peak_above_naive.push_back(c.spec.name);
  }
  if (std::find(rep.strategies.begin(), rep.strategies.end(), "reshard") == rep.strategies.end()) return s;
  for (const std::string& other : rep.strategies) {
    if (other == "reshard") continue;
    Versus v = versus(rep, other);
    if (v.cases == 0) continue;
    if (other != "raw" && other != "raw_alltoallv" && (!s.worst || v.min < s.worst->min)) s.worst = v;
    s.versus.push_back(std::move(v));
  }
  return s;
}

nlohmann::json to_json(const Report& rep, const Summary& sum) {
  nlohmann::json j;
  j["suite"] = rep.suite;
  j["ranks"] = rep.ranks;
  j["backend"] = rep.backend;
  j["iters"] = rep.iters;
  j["warmup"] = rep.warmup;
  j["strategies"] = rep.strategies;
  j["topology"] = rep.topology;
  j["check_every_call"] = rep.check_every_call;
  j["yield_when_idle"] = rep.yield_when_idle;
  if (rep.sweep.min_bytes > 0)
    j["sweep"] = {{"min_bytes", rep.sweep.min_bytes}, {"max_bytes", rep.sweep.max_bytes}, {"factor", rep.sweep.factor},
                  {"sizes", sweep_sizes(rep.sweep)}};
  if (rep.sweep.dtype) j["dtype"] = std::string(name_of(*rep.sweep.dtype));
  j["definitions"] = {
      {"time", "per iteration (after a barrier) the max across ranks of MPI_Wtime differences; median, min and "
               "max over the timed iterations"},
      {"size_bytes", "S: max(largest source shard, largest target shard), nccl-tests' per-rank size (the same in "
                     "`reshard run --json`)"},
      {"algbw_GBps", "S / time_median_s"},
      {"busbw_GBps", "algbw * F, F = busbw_factor of the case: the lower bound on bytes the busiest device "
                     "receives (for a pending-reduction source, the reshard plan's ring-reduction bytes) over S; "
                     "nccl-tests' factor on single-collective cases"},
      {"peak_bytes", "max over ranks of source shard + target shard + executor workspace high-water mark "
                     "(bytes it allocated); raw: its send and receive buffers"},
      {"bytes_recv_max", "max over devices of bytes received from other devices (plan statistics; raw: what "
                         "its MPI call receives, reductions as ring algorithms)"},
      {"wrong", "elements that did not match in the check; 0 when verified"},
      {"verified", "target: a fresh execution's target shard matched the index fill on every rank (pending "
                   "reductions reduced first) and the input was left untouched; transport (raw): every rank "
                   "received what the MPI call's semantics give"},
      {"reshard_speedup", "time_median_s of this strategy / time_median_s of reshard on the same case"},
      {"batched_cases", "a case with a target mesh (fifth field) or, with --batch, a run of lines on the same pair "
                        "of meshes: reshard is the batched cross-mesh plan (one call), single_calls one call per "
                        "array, raw_alltoallv one MPI_Alltoallv moving the same bytes between the same ranks, "
                        "gather_scatter MPI_Gatherv to one rank then MPI_Scatterv per array; S is the largest "
                        "per-rank total of source or target shards, F its lower bound over S"},
      {"reshard_speedup_paired", "quartiles over the timed rounds of this strategy's time / reshard's time in "
                                 "the same round (strategies take turns within a round)"}};
  nlohmann::json cases = nlohmann::json::array(), rows = nlohmann::json::array();
  for (const CaseResult& c : rep.cases) {
    cases.push_back({{"case", c.spec.name}, {"mesh", c.spec.mesh}, {"from", c.spec.from}, {"to", c.spec.to},
                     {"tight", c.spec.tight}, {"devices", c.devices}, {"ran", c.ran}, {"size_bytes", c.size_bytes},
                     {"busbw_factor", c.bus_factor}, {"notes", c.notes}});
    if (!c.spec.to_mesh.empty()) cases.back()["to_mesh"] = c.spec.to_mesh;
    if (c.arrays > 1) cases.back()["arrays"] = c.arrays;
    for (const Row& r : c.rows) rows.push_back(row_json(c, r));
  }
  j["cases"] = cases;
  j["rows"] = rows;
  nlohmann::json vs = nlohmann::json::object();
  for (const Versus& v : sum.versus)
    vs[v.other] = {{"cases", v.cases},
                   {"geomean_speedup", v.geomean},
                   {"max_speedup", v.max},
                   {"max_case", v.max_case},
                   {"min_speedup", v.min},
                   {"min_case", v.min_case},
                   {"slower_than_5pct", v.slower},
                   {"slower_than_5pct_in_most_rounds", v.slower_consistently},
                   {"peak_ratio_geomean", v.peak_geomean},
                   {"peak_ratio_min", v.peak_min},
                   {"peak_ratio_max", v.peak_max}};
  j["summary"] = {{"cases_run", sum.cases_run},
                  {"cases_skipped", sum.cases_skipped},
                  {"rows", sum.rows},
                  {"rows_verified", sum.rows_verified},
                  {"all_verified", sum.rows == sum.rows_verified},
                  {"reshard_vs", vs},
                  {"reshard_peak_above_naive", sum.reshard_peak_above_naive}};
  if (sum.worst)
    j["summary"]["worst_case"] = {{"case", sum.worst->min_case}, {"baseline", sum.worst->other}, {"speedup", sum.worst->min}};
  return j;
}

std::string csv_header() {
  return "case,mesh,from,to,devices,strategy,steps,iters,time_median_s,time_min_s,time_max_s,first_call_s,"
         "bytes_recv_max,peak_bytes,workspace_bytes,size_bytes,algbw_GBps,busbw_GBps,reshard_speedup,verified,check,"
         "mismatches\n";
}

std::string csv_rows(const CaseResult& c) {
  std::string out;
  for (const Row& r : c.rows) {
    auto s = reshard_speedup(c, r);
    out += fmt::format("{},{},{},{},{},{},{},{},{:.9g},{:.9g},{:.9g},{:.9g},{},{},{},{},{:.6g},{:.6g},{},{},{},{}\n",
                       csv_field(c.spec.name), csv_field(c.spec.mesh), csv_field(c.spec.from), csv_field(c.spec.to),
                       c.devices, r.strategy, csv_field(fmt::format("{}", fmt::join(r.steps, " "))), r.time.iters,
                       r.time.median_s, r.time.min_s, r.time.max_s, r.first_call_s, r.bytes_recv_max, r.peak_bytes,
                       r.workspace_bytes, c.size_bytes, algbw_GBps(c, r), busbw_GBps(c, r),
                       s ? fmt::format("{:.6g}", *s) : "", r.verified, r.check, r.mismatches);
  }
  return out;
}

std::string to_csv(const Report& rep) {
  std::string out = csv_header();
  for (const CaseResult& c : rep.cases) out += csv_rows(c);
  return out;
}

std::string table_header(const Report& rep) {
  return fmt::format(
      "reshard bench: {} on {} ranks{}{}, {} timed iterations after {} warm-up, executor agreement check {}\n"
      "  time: per iteration the max across ranks (barrier first{}); median, min, max over iterations\n"
      "  S: per-rank size, max(source shard, target shard); algbw = S / median, busbw = algbw * F in GB/s (nccl-tests)\n"
      "  peak: max over ranks of source + target shard + executor workspace; reshard x: this time / reshard's;\n"
      "  #wrong: elements that did not match in the check (0 when verified)\n"
      "  paired IQR: quartiles over rounds of this time / reshard's in the same round (spans 1: within noise)\n\n"
      "  {:<16} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7} {:>9} {:>11} {:>7}  {}\n",
      rep.suite, rep.ranks, rep.backend == "nccl" ? " (NCCL, device buffers)" : "",
      rep.yield_when_idle ? " (yielding when idle)" : "", rep.iters, rep.warmup,
      rep.check_every_call ? "on every call" : "on the first call", rep.backend == "nccl" ? "; CUDA events" : "",
      "strategy", "steps", "median ms", "min ms", "max ms", "recv max", "peak", "algbw", "busbw", "reshard x",
      "paired IQR", "#wrong", "verified");
}

std::string table_case(const CaseResult& c) {
  std::string out = fmt::format("{} on {}: {} -> {}{}", c.spec.name, c.spec.mesh, c.spec.from, c.spec.to,
                                c.spec.to_mesh.empty() ? "" : " on " + c.spec.to_mesh);
  if (c.ran) out += fmt::format("  (S {}, F {:.3g})", human_bytes(c.size_bytes), c.bus_factor);
  out += "\n";
  for (const Row& r : c.rows) {
    auto s = reshard_speedup(c, r);
    auto p = r.same_plan_as.empty() ? paired_speedup(c, r) : std::nullopt;
    out += fmt::format("  {:<16} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>7.2f} {:>7.2f} {:>9} {:>11} {:>7}  {}\n", r.strategy,
                       r.strategy == "raw" ? "-" : fmt::to_string(r.steps.size()), ms(r.time.median_s),
                       ms(r.time.min_s), ms(r.time.max_s), human_bytes(r.bytes_recv_max), human_bytes(r.peak_bytes), algbw_GBps(c, r),
                       busbw_GBps(c, r), r.strategy == "reshard" || !s ? "-" : fmt::format("{:.2f}", *s),
                       r.strategy == "reshard" || !p ? "-" : fmt::format("{:.2f}-{:.2f}", p->q1, p->q3), r.mismatches,
                       fmt::format("{}{}",
                                   r.verified ? (r.check == "transport" ? "yes (transport)" : "yes")
                                              : fmt::format("NO ({} mismatches)", r.mismatches),
                                   r.same_plan_as.empty() ? "" : fmt::format(", same plan as {}", r.same_plan_as)));
  }
  for (const std::string& n : c.notes) out += fmt::format("  note: {}\n", n);
  return out;
}

std::string table_summary(const Report& rep, const Summary& sum) {
  std::string out = fmt::format("\nsummary: {} cases run, {} skipped; {} of {} rows verified\n", sum.cases_run,
                                sum.cases_skipped, sum.rows_verified, sum.rows);
  for (const Versus& v : sum.versus) {
    if (v.other == "raw")
      out += fmt::format("  reshard against raw            : geomean {:.2f} of raw's speed, min {:.2f} ({}), max {:.2f} ({}) "
                         "over {} single-collective cases\n",
                         v.geomean, v.min, v.min_case, v.max, v.max_case, v.cases);
    else if (v.other == "raw_alltoallv")
      out += fmt::format("  reshard against raw_alltoallv  : geomean {:.2f} of its speed, min {:.2f} ({}), max {:.2f} ({}) "
                         "over {} batched or cross-mesh cases\n",
                         v.geomean, v.min, v.min_case, v.max, v.max_case, v.cases);
    else
      out += fmt::format("  reshard over {:<18}: geomean {:.2f}x, max {:.2f}x ({}), min {:.2f}x ({}) over {} cases; "
                         "more than 5% slower on: {} (in most rounds: {})\n",
                         v.other, v.geomean, v.max, v.max_case, v.min, v.min_case, v.cases, list_or_none(v.slower),
                         list_or_none(v.slower_consistently));
  }
  for (const Versus& v : sum.versus)
    out += fmt::format("  peak memory of {:<16} relative to reshard: geomean {:.2f}x, min {:.2f}x ({}), max {:.2f}x\n",
                       v.other, v.peak_geomean, v.peak_min, v.peak_min_case, v.peak_max);
  if (std::find(rep.strategies.begin(), rep.strategies.end(), "naive") != rep.strategies.end())
    out += fmt::format("  reshard holds more memory than naive on: {}\n", list_or_none(sum.reshard_peak_above_naive));
  if (sum.worst)
    out += fmt::format("  worst case: {}, reshard {:.2f}x of {}\n", sum.worst->min_case, sum.worst->min, sum.worst->other);
  return out;
}

}  // namespace reshard::bench
