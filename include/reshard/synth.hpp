#pragma once
// The synthesizer: from (mesh, source, target) a memory-bounded plan (docs/design.md 3).
//
// Guarantees of synthesize(mesh, src, dst) for valid, compatible types:
//  1. correct: executing the plan leaves every device with its target shard;
//  2. every T(i) has max local bytes <= max(src, dst max local bytes);
//  3. bytes received reach the lower bound where a collective plan can, else an exact
//     `exchange` is weighed against the collective plan by the cost model;
//  4. symbolic: no data touched; plans are cached by PlanCache.
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "reshard/plan.hpp"

namespace reshard {

// Per-axis link figures for the cost model. A collective over several axes runs at the
// slowest of their bandwidths and pays the largest latency.
struct Link {
  double bandwidth_GBps = 10.0;
  double latency_s = 5e-6;
  bool operator==(const Link&) const = default;
};

class Topology {
 public:
  Topology() = default;  // flat: every axis has the default Link
  // `tp=nvlink,dp=ib` or numbers: `tp=300,dp=25:10us` (GB/s, optional `:latency` in s, ms,
  // us or ns; decimal numbers only). Presets: nvlink, ib, pcie, eth, shm. Axes not named get
  // `default_link` (settable as `default=...`). Throws ParseError with the position on bad
  // text, an axis given twice, or figures out of range (bandwidth 1e-9..1e12 GB/s, latency
  // up to 3600 s). With a mesh, every axis named must be one of its axes.
  static Topology parse(std::string_view text);
  static Topology parse(std::string_view text, const Mesh& mesh);
  Link link(std::string_view axis) const;
  std::vector<std::string> axes() const;  // the axes given a link of their own
  void set(std::string axis, Link l) { links_[std::move(axis)] = l; }
  Link default_link;
  std::string to_string() const;
  bool operator==(const Topology&) const = default;

 private:
  static Topology parse_impl(std::string_view text, const Mesh* mesh);
  std::map<std::string, Link, std::less<>> links_;
};

// reshard: the synthesizer; naive: gather everything, slice; greedy_per_axis: one mesh axis
// at a time; dtensor: the rules of DTensor 2.15's redistribute (src/synth/dtensor.cpp);
// exchange: one exact point-to-point step.
enum class Strategy { reshard, naive, greedy_per_axis, exchange, dtensor };
std::string_view name_of(Strategy s);
Strategy strategy_from_name(std::string_view name);  // throws Error on unknown names

struct SynthOptions {
  Strategy strategy = Strategy::reshard;
  Topology topology;
  // Bytes per second of local copies (pack/unpack), for the cost model.
  double local_copy_GBps = 10.0;
  // Compute exact plan.stats (routes every step on every device; O(devices * group) per
  // step). Turn off where only the plan is needed and the mesh is very large.
  bool exact_stats = true;
};

// Checks that src and dst can be resharded into one another on mesh (same dtype and global
// shape, each valid on the mesh, reduce ops compatible). Throws MismatchError naming the
// problem.
void check_compatible(const Mesh& mesh, const Type& src, const Type& dst);

// Builds the plan; fills plan.stats (see SynthOptions::exact_stats).
Plan synthesize(const Mesh& mesh, const Type& src, const Type& dst, const SynthOptions& opts = {});

// Bytes the busiest device receives in a step, estimated symbolically from the largest blocks
// (exchange: from a sample of devices). Reductions count what ring algorithms move.
std::int64_t estimate_step_bytes(const Mesh& mesh, const Step& step);
// Cost model estimate of one step and of a plan, in seconds.
double estimate_step_s(const Mesh& mesh, const Step& step, const SynthOptions& opts);
double estimate_plan_s(const Plan& plan, const SynthOptions& opts);
// The `dtensor` strategy's figures, as DTensor has them: its local arrays are nested
// torch.chunk blocks (per mesh dim, in shard order) and its collectives pad uneven ones.
// Exact over every device.
struct DtensorFigures {
  std::vector<std::int64_t> step_bytes_recv_max;  // per step, the busiest device
  std::int64_t bytes_recv_max = 0;                // max over devices of the plan's total
  std::int64_t max_local_bytes = 0;               // largest local array, source and steps' outputs
};
DtensorFigures dtensor_figures(const Mesh& mesh, const Type& src, const std::vector<Step>& steps);
// Where the `dtensor` strategy cannot follow DTensor's plan (its fallback): the bytes the busiest
// device receives in a step when every block is padded to the largest one.
std::int64_t dtensor_padded_step_bytes(const Mesh& mesh, const Step& step);

// Thread-safe cache of plans by (mesh, source, target, options), least recently used out
// beyond a limit in bytes (each plan charged approx_bytes(), its key included). A plan dropped
// is synthesized again when asked for; callers holding its shared_ptr keep it alive. The
// default holds thousands of everyday plans (a few KiB each).
class PlanCache {
 public:
  static constexpr std::int64_t kDefaultLimitBytes = std::int64_t{64} << 20;
  explicit PlanCache(std::int64_t limit_bytes = kDefaultLimitBytes);
  std::shared_ptr<const Plan> get(const Mesh& mesh, const Type& src, const Type& dst,
                                  const SynthOptions& opts = {});
  std::size_t size() const;
  std::int64_t bytes() const;       // charged now (<= the limit, or one plan larger than it)
  std::int64_t evictions() const;   // plans dropped so far
  std::int64_t limit_bytes() const;
  void set_limit_bytes(std::int64_t limit);  // >= 0; drops plans at once to fit
  void clear();

 private:
  struct Entry {
    std::shared_ptr<const Plan> plan;
    std::int64_t bytes = 0;
    std::list<std::string>::iterator lru;
  };
  void evict_to(std::int64_t limit);  // pre: mu_ held
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> plans_;
  std::list<std::string> lru_;  // keys, most recently used first
  std::int64_t limit_, bytes_ = 0, evictions_ = 0;
};

// Heap bytes a plan holds, approximately (types, steps, notes, stats): what PlanCache charges.
std::int64_t approx_bytes(const Plan& plan);

}  // namespace reshard
