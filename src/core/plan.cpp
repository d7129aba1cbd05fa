#include "reshard/plan.hpp"

#include <algorithm>

#include "reshard/error.hpp"
#include "reshard/route.hpp"

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

BufferPlan buffer_plan(const Plan& plan) {
  BufferPlan bp;
  int n = static_cast<int>(plan.steps.size());
  bp.slot.assign(n, 0);
  const Mesh& m = plan.mesh;
  // The output buffer can hold an intermediate only where it fits on every device: with
  // uneven blocks a device's own target shard may be smaller than its intermediate.
  auto fits_output = [&](const Type& t) {
    for (int d = 0; d < m.num_devices(); ++d)
      if (t.local_bytes(m, d) > plan.dst.local_bytes(m, d)) return false;
    return true;
  };
  for (int k = n - 2; k >= 0; --k) {
    int after = bp.slot[k + 1];
    std::int64_t need = plan.steps[k].out.max_local_bytes(m);
    // Step k+1 reads slot[k] and writes slot[k+1]: they must differ.
    if (after != 0 && fits_output(plan.steps[k].out)) bp.slot[k] = 0;
    else bp.slot[k] = after == 1 ? 2 : 1;
    bp.scratch_bytes[bp.slot[k]] = std::max(bp.scratch_bytes[bp.slot[k]], bp.slot[k] ? need : 0);
  }
  return bp;
}

void analyze(Plan& plan) {
  const Mesh& m = plan.mesh;
  PlanStats& st = plan.stats;
  st = PlanStats{};
  st.src_local_bytes = plan.src.max_local_bytes(m);
  st.dst_local_bytes = plan.dst.max_local_bytes(m);
  st.max_intermediate_bytes = std::max(st.src_local_bytes, st.dst_local_bytes);
  std::int64_t elem = static_cast<std::int64_t>(size_of(plan.src.dtype));
  int P = m.num_devices();
  // Exact figures visit every device per step and hold a counter per device: refused beyond
  // kMaxExactStatsDevices rather than running for minutes into gigabytes.
  if (P > kMaxExactStatsDevices)
    throw Error(fmt::format("exact plan statistics visit every device; mesh {} has {} devices, over the limit of {} "
                            "(synthesize with SynthOptions::exact_stats = false)", m, P, kMaxExactStatsDevices));
  std::vector<std::int64_t> recv(P, 0);
  std::int64_t staging = 0;
  // Devices whose routes are built to size the staging buffers: all of them on meshes of up
  // to 256 devices, an even spread beyond (routing a device costs O(group size)).
  int stride = std::max(1, P / 256);
  for (const Step& step : plan.steps) {
    st.max_intermediate_bytes = std::max(st.max_intermediate_bytes, step.out.max_local_bytes(m));
    std::int64_t g = 1;
    for (const auto& a : step.axes) g *= m.axis_size(a);
    std::int64_t worst = 0;
    for (int d = 0; d < P; ++d) {
      std::int64_t got = 0;
      if (!step.communicates()) {
        got = 0;
      } else if (step.op == Op::all_reduce) {
        // Counted as a ring all-reduce moves it: 2 (g-1)/g of the array.
        std::int64_t b = step.in.local_bytes(m, d);
        got = g > 1 ? b / g * 2 * (g - 1) + b % g * 2 * (g - 1) / g : 0;  // exact, no overflow
      } else if (step.op == Op::reduce_scatter) {
        got = (g - 1) * step.out.local_bytes(m, d);  // its share from every other member
      } else {
        // A device takes from itself what its in-block holds and everything else from others.
        Box want = step.out.block(m, d);
        got = (want.volume() - intersect(want, step.in.block(m, d)).volume()) * elem;
      }
      recv[d] += got;
      worst = std::max(worst, got);
      if (d % stride == 0) {
        Staging s = staging_of(m, step, route(m, step, d), d);
        staging = std::max(staging, s.send_bytes + s.recv_bytes);
      }
    }
    st.step_bytes_recv_max.push_back(worst);
  }
  st.bytes_recv_max = P ? *std::max_element(recv.begin(), recv.end()) : 0;
  if (plan.src.op == ReduceOp::none) {
    st.lower_bound_bytes = 0;
    for (int d = 0; d < P; ++d) {
      Box want = plan.dst.block(m, d);
      std::int64_t miss = want.volume() - intersect(want, plan.src.block(m, d)).volume();
      st.lower_bound_bytes = std::max(st.lower_bound_bytes, miss * elem);
    }
  }
  BufferPlan bp = buffer_plan(plan);
  st.workspace_bytes = bp.scratch_bytes[1] + bp.scratch_bytes[2] + staging;
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
