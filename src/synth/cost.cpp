// The cost model: latency plus bytes over the slowest link of the group, plus local copies.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "../core/indexed.hpp"
#include "reshard/error.hpp"
#include "reshard/synth.hpp"

namespace reshard {

namespace {

struct Preset {
  std::string_view name;
  Link link;
};
// Typical figures: per-direction bandwidth per device and small-message latency.
constexpr Preset kPresets[] = {
    {"nvlink", {300.0, 2e-6}}, {"ib", {25.0, 5e-6}},  {"pcie", {16.0, 5e-6}},
    {"eth", {1.25, 30e-6}},    {"shm", {5.0, 2e-6}},
};

double parse_number(std::string_view s, std::string_view what) {
  std::string str(s);
  char* end = nullptr;
  double v = std::strtod(str.c_str(), &end);
  if (str.empty() || end != str.c_str() + str.size() || !(v > 0) || !std::isfinite(v))
    throw Error(fmt::format("topology: {} '{}' is not a positive number", what, s));
  return v;
}

double parse_latency(std::string_view s) {
  double scale = 1;
  auto ends = [&](std::string_view suf) {
    return s.size() > suf.size() && s.substr(s.size() - suf.size()) == suf;
  };
  if (ends("ns")) scale = 1e-9, s.remove_suffix(2);
  else if (ends("us")) scale = 1e-6, s.remove_suffix(2);
  else if (ends("ms")) scale = 1e-3, s.remove_suffix(2);
  else if (ends("s")) s.remove_suffix(1);
  return parse_number(s, "latency") * scale;
}

}  // namespace

Topology Topology::parse(std::string_view text) {
  Topology t;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    std::string_view item = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.front()))) item.remove_prefix(1);
    while (!item.empty() && std::isspace(static_cast<unsigned char>(item.back()))) item.remove_suffix(1);
    if (item.empty()) {
      if (text.empty()) break;
      throw Error(fmt::format("topology '{}': empty entry at position {}", text, pos));
    }
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0)
      throw Error(fmt::format("topology '{}': entry '{}' at position {} should be axis=link "
                              "(a preset nvlink, ib, pcie, eth, shm or GB/s[:latency])", text, item, pos));
    std::string axis(item.substr(0, eq));
    std::string_view val = item.substr(eq + 1);
    Link l;
    std::size_t colon = val.find(':');
    std::string_view bw = val.substr(0, colon);
    auto preset = std::find_if(std::begin(kPresets), std::end(kPresets), [&](const Preset& p) { return p.name == bw; });
    if (preset != std::end(kPresets)) l = preset->link;
    else l.bandwidth_GBps = parse_number(bw, "bandwidth");
    if (colon != std::string_view::npos) l.latency_s = parse_latency(val.substr(colon + 1));
    if (axis == "default") t.default_link = l;
    else t.set(axis, l);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return t;
}

Link Topology::link(std::string_view axis) const {
  auto it = links_.find(axis);
  return it == links_.end() ? default_link : it->second;
}

std::string Topology::to_string() const {
  std::string s = fmt::format("default={}:{}s", default_link.bandwidth_GBps, default_link.latency_s);
  for (const auto& [a, l] : links_) s += fmt::format(",{}={}:{}s", a, l.bandwidth_GBps, l.latency_s);
  return s;
}

std::int64_t estimate_step_bytes(const Mesh& mesh, const Step& step) {
  if (!step.communicates()) return 0;
  std::int64_t in = step.in.max_local_bytes(mesh), out = step.out.max_local_bytes(mesh);
  double g = 1;
  for (const auto& a : step.axes) g *= mesh.axis_size(a);
  switch (step.op) {
    case Op::all_gather: return std::max<std::int64_t>(0, out - in);
    case Op::all_to_all: {
      // With even blocks a device keeps 1/g of its out-block (g: the axes that change dim)
      // when every dim only loses or only gains minor axes. A dim that does both (axes
      // swapped between dims) has devices whose in- and out-blocks along it are disjoint:
      // they receive their whole out-block.
      double moved = 1;
      auto nontrivial = [&](std::vector<std::string> v) {  // size-1 axes split nothing
        std::erase_if(v, [&](const std::string& x) { return mesh.axis_size(x) == 1; });
        return v;
      };
      for (int d = 0; d < step.in.rank(); ++d) {
        const auto a = nontrivial(step.in.dims[d].axes);
        const auto b = nontrivial(step.out.dims[d].axes);
        std::size_t p = 0;
        while (p < a.size() && p < b.size() && a[p] == b[p]) ++p;
        if (p < a.size() && p < b.size()) return out;
        for (std::size_t k = p; k < a.size(); ++k) moved *= mesh.axis_size(a[k]);
      }
      return static_cast<std::int64_t>(out * (1 - 1 / (moved > 1 ? moved : g)));
    }
    case Op::permute: return out;
    case Op::reduce_scatter: return static_cast<std::int64_t>(in * (1 - 1 / g));
    case Op::all_reduce: return static_cast<std::int64_t>(2 * in * (1 - 1 / g));
    default: break;
  }
  // Exchange moves exactly what a device lacks: its out-block less what its in-block holds.
  // Every device up to 4,096, a spread sample beyond.
  int P = mesh.num_devices();
  int stride = std::max(1, P / 4096);
  detail::IndexedType tin(step.in, mesh), tout(step.out, mesh);
  std::int64_t worst = 0;
  for (int d = 0; d < P; d += stride) {
    std::vector<int> c = detail::coords_of(mesh, d);
    std::int64_t want = 1, have = 1;
    for (int k = 0; k < step.in.rank(); ++k) {
      Interval o = tout.interval(k, c, mesh), i = tin.interval(k, c, mesh);
      want *= o.extent();
      have *= Interval{std::max(o.lo, i.lo), std::min(o.hi, i.hi)}.extent();
    }
    worst = std::max(worst, want - have);
  }
  return worst * static_cast<std::int64_t>(size_of(step.in.dtype));
}

double estimate_step_s(const Mesh& mesh, const Step& step, const SynthOptions& opts) {
  double copy = static_cast<double>(step.out.max_local_bytes(mesh)) / (opts.local_copy_GBps * 1e9);
  if (!step.communicates()) return step.op == Op::local && step.local_kind == LocalKind::relabel ? 0 : copy;
  double bw = std::numeric_limits<double>::infinity(), lat = 0, g = 1;
  for (const auto& a : step.axes) {
    Link l = opts.topology.link(a);
    bw = std::min(bw, l.bandwidth_GBps);
    lat = std::max(lat, l.latency_s);
    g *= mesh.axis_size(a);
  }
  if (!std::isfinite(bw)) bw = opts.topology.default_link.bandwidth_GBps, lat = opts.topology.default_link.latency_s;
  double bytes = static_cast<double>(estimate_step_bytes(mesh, step));
  double rounds = std::ceil(std::log2(std::max(g, 1.0))) + 1;
  if (step.op == Op::exchange) {
    // Point-to-point rounds are less tuned than collectives: a message per peer, and a small
    // premium on bandwidth so that a collective wins ties.
    rounds = g;
    bytes *= 1.05;
  }
  return lat * rounds + bytes / (bw * 1e9) + copy;
}

double estimate_plan_s(const Plan& plan, const SynthOptions& opts) {
  double s = 0;
  for (const Step& st : plan.steps) s += estimate_step_s(plan.mesh, st, opts);
  return s;
}

}  // namespace reshard
