#include "reshard/plan.hpp"

#include <algorithm>

#include "indexed.hpp"
#include "reshard/error.hpp"
#include "reshard/workspace.hpp"

namespace reshard {

std::string_view name_of(Op op) {
  switch (op) {
    case Op::slice: return "slice";
    case Op::all_gather: return "all_gather";
    case Op::all_to_all: return "all_to_all";
    case Op::permute: return "permute";
    case Op::reduce_scatter: return "reduce_scatter";
    case Op::all_reduce: return "all_reduce";
    case Op::exchange: return "exchange";
    case Op::local: return "local";
  }
  return "?";
}

bool runs_in_place(const Mesh& mesh, const Step& step) {
  if (step.op != Op::local) return false;
  for (int d = 0; d < step.in.rank(); ++d) {  // the same axes but for size-1 ones: the same blocks
    auto split = [&](const std::vector<std::string>& v) {
      std::vector<std::string> r;
      for (const auto& a : v)
        if (mesh.axis_size(a) != 1) r.push_back(a);
      return r;
    };
    if (split(step.in.dims[d].axes) != split(step.out.dims[d].axes)) return false;
  }
  return true;
}

BufferPlan buffer_plan(const Plan& plan) {
  BufferPlan bp;
  int n = static_cast<int>(plan.steps.size());
  bp.slot.assign(n, 0);
  const Mesh& m = plan.mesh;
  // The output buffer can hold an intermediate only where it fits on every device: with
  // uneven blocks a device's own target shard may be smaller than its intermediate.
  std::vector<std::int64_t> dst_bytes;
  auto fits_output = [&](const Type& t) {
    if (dst_bytes.empty()) dst_bytes = local_bytes_per_device(plan.dst, m);
    std::vector<std::int64_t> b = local_bytes_per_device(t, m);
    for (std::size_t d = 0; d < b.size(); ++d)
      if (b[d] > dst_bytes[d]) return false;
    return true;
  };
  for (int k = n - 2; k >= 0; --k) {
    int after = bp.slot[k + 1];
    std::int64_t need = plan.steps[k].out.max_local_bytes(m);
    // A step that keeps every block (make_partial, relabel) runs in the buffer it reads.
    if (runs_in_place(m, plan.steps[k + 1])) {
      bp.slot[k] = after;
      bp.scratch_bytes[after] = std::max(bp.scratch_bytes[after], after ? need : 0);
      continue;
    }
    // Step k+1 reads slot[k] and writes slot[k+1]: they must differ.
    if (after != 0 && fits_output(plan.steps[k].out)) bp.slot[k] = 0;
    else bp.slot[k] = after == 1 ? 2 : 1;
    bp.scratch_bytes[bp.slot[k]] = std::max(bp.scratch_bytes[bp.slot[k]], bp.slot[k] ? need : 0);
  }
  return bp;
}

namespace {

// Bytes a device receives in one step, from its blocks alone (what its route delivers from
// other devices; docs/stats.md). `in` and `out` are the step's types, `g` its group size.
struct StepRecv {
  const Step& step;
  detail::IndexedType in, out;
  std::int64_t g = 1, elem = 1;

  StepRecv(const Mesh& m, const Step& s) : step(s), in(s.in, m), out(s.out, m) {
    for (const auto& a : s.axes) g *= m.axis_size(a);
    elem = static_cast<std::int64_t>(size_of(s.in.dtype));
  }
  std::int64_t operator()(const Mesh& m, const std::vector<int>& c) const {
    if (!step.communicates()) return 0;
    std::int64_t want = 1, held = 1, have = 1;
    for (int d = 0; d < static_cast<int>(in.dims.size()); ++d) {
      Interval o = out.interval(d, c, m), i = in.interval(d, c, m);
      want *= o.extent();
      have *= i.extent();
      held *= std::max<std::int64_t>(0, std::min(o.hi, i.hi) - std::max(o.lo, i.lo));
    }
    if (step.op == Op::all_reduce) {
      // Counted as a ring all-reduce moves it: 2 (g-1)/g of the array.
      std::int64_t b = have * elem;
      return g > 1 ? b / g * 2 * (g - 1) + b % g * 2 * (g - 1) / g : 0;  // exact, no overflow
    }
    if (step.op == Op::reduce_scatter) return (g - 1) * want * elem;  // its share from every other member
    // A device takes from itself what its in-block holds and everything else from others.
    return (want - held) * elem;
  }
};

}  // namespace

void analyze(Plan& plan) {
  const Mesh& m = plan.mesh;
  PlanStats& st = plan.stats;
  st = PlanStats{};
  st.src_local_bytes = plan.src.max_local_bytes(m);
  st.dst_local_bytes = plan.dst.max_local_bytes(m);
  st.max_intermediate_bytes = std::max(st.src_local_bytes, st.dst_local_bytes);
  const int P = m.num_devices();
  // Exact figures visit every device per step and hold a few arrays per device: refused beyond
  // kMaxExactStatsDevices rather than running for minutes into gigabytes.
  if (P > kMaxExactStatsDevices)
    throw Error(fmt::format("exact plan statistics visit every device; mesh {} has {} devices, over the limit of {} "
                            "(synthesize with SynthOptions::exact_stats = false)", m, P, kMaxExactStatsDevices));
  std::vector<StepRecv> steps;
  for (const Step& step : plan.steps) {
    st.max_intermediate_bytes = std::max(st.max_intermediate_bytes, step.out.max_local_bytes(m));
    steps.emplace_back(m, step);
  }
  st.step_bytes_recv_max.assign(steps.size(), 0);
  // One sweep over the devices: each device's figures come from its coordinates alone.
  const bool lower_bound = plan.src.op == ReduceOp::none;
  const Step whole{Op::exchange, plan.src, plan.dst, {}, {}, LocalKind::relabel};  // what it lacks
  const StepRecv lacks(m, whole);
  std::vector<int> all(m.num_axes()), c(m.num_axes(), 0);
  for (int a = 0; a < m.num_axes(); ++a) all[a] = a;
  st.lower_bound_bytes = lower_bound ? 0 : -1;
  do {
    std::int64_t total = 0;
    for (std::size_t k = 0; k < steps.size(); ++k) {
      std::int64_t got = steps[k](m, c);
      total += got;
      st.step_bytes_recv_max[k] = std::max(st.step_bytes_recv_max[k], got);
    }
    st.bytes_recv_max = std::max(st.bytes_recv_max, total);
    if (lower_bound) st.lower_bound_bytes = std::max(st.lower_bound_bytes, lacks(m, c));
  } while (detail::next_coords(c, all, m));
  if (P == 0) st.bytes_recv_max = 0;
  std::vector<std::int64_t> ws = workspace_per_device(plan);
  st.workspace_bytes = ws.empty() ? 0 : *std::max_element(ws.begin(), ws.end());
}

std::string to_string(const Step& s) {
  std::string what = std::string(name_of(s.op));
  if (s.op == Op::local) what += s.local_kind == LocalKind::make_partial ? "(make_partial)" : "(relabel)";
  std::string r = fmt::format("{} ", what);
  if (!s.axes.empty()) r += fmt::format("{{{}}} ", fmt::join(s.axes, ","));
  if (!s.dims.empty()) r += fmt::format("dims {} ", fmt::join(s.dims, ","));
  return r + fmt::format("-> {}", s.out);
}

namespace {
std::string human(std::int64_t b) {
  if (b < 0) return "n/a";
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u ? fmt::format("{:.1f} {}", v, unit[u]) : fmt::format("{} B", b);
}
}  // namespace

std::string to_string(const Plan& p) {
  std::string r = fmt::format("plan on mesh {} ({} devices), strategy {}\n  from {}\n  to   {}\n", p.mesh,
                              p.mesh.num_devices(), p.strategy, p.src, p.dst);
  if (p.steps.empty()) r += "  no steps: the source already is the target\n";
  for (std::size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    std::string op = std::string(name_of(s.op));
    if (s.op == Op::local) op = s.local_kind == LocalKind::make_partial ? "make_partial" : "relabel";
    std::string recv = i < p.stats.step_bytes_recv_max.size() ? human(p.stats.step_bytes_recv_max[i]) : "?";
    r += fmt::format("  {:>2}. {:<15}{:<10}{:<8} recv {:>10}  local {:>10}  -> {}\n", i + 1, op,
                     s.axes.empty() ? "-" : fmt::format("{{{}}}", fmt::join(s.axes, ",")),
                     s.dims.empty() ? "" : fmt::format("dims {}", fmt::join(s.dims, ",")), recv,
                     human(s.out.max_local_bytes(p.mesh)), s.out);
  }
  const PlanStats& st = p.stats;
  r += fmt::format("  received (max device) {}", human(st.bytes_recv_max));
  if (st.lower_bound_bytes >= 0) {
    r += fmt::format(", lower bound {}", human(st.lower_bound_bytes));
    if (st.lower_bound_bytes > 0)
      r += fmt::format(" ({:.2f}x)", static_cast<double>(st.bytes_recv_max) / static_cast<double>(st.lower_bound_bytes));
  }
  r += fmt::format("\n  largest local array {} (bound {}), workspace {}, estimated {:.3g} s\n",
                   human(st.max_intermediate_bytes), human(std::max(st.src_local_bytes, st.dst_local_bytes)),
                   human(st.workspace_bytes), st.est_time_s);
  for (const auto& n : p.notes) r += fmt::format("  note: {}\n", n);
  return r;
}

}  // namespace reshard
