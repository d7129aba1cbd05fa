// The cost model: latency plus bytes over the slowest link of the group, plus local copies.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <vector>

#include "../core/indexed.hpp"
#include "../core/lexer.hpp"
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

// Link figures outside these ranges make the cost model meaningless (a latency of 1e308 s
// turns every estimate into infinity): refused at parse time, with the position.
constexpr double kMinBandwidthGBps = 1e-9, kMaxBandwidthGBps = 1e12;  // 1 B/s .. 1 ZB/s
constexpr double kMaxLatencyS = 3600;

// A decimal number: digits, optional fraction, optional exponent. No sign, no hex, no inf/nan
// (strtod would take `0x10`, `inf` and `1e999`). Pre: lx at the number. Post: lx after it.
double decimal(detail::Lexer& lx, std::string_view text, std::string_view what) {
  lx.skip_ws();
  const std::size_t start = lx.pos();
  std::size_t i = start;
  auto digits = [&] {
    std::size_t from = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    return i > from;
  };
  bool whole = digits(), frac = false;
  if (i < text.size() && text[i] == '.') ++i, frac = digits();
  if (!whole && !frac) {
    if (start >= text.size()) lx.fail(fmt::format("expected {} (a positive decimal number), found the end of the text", what), start);
    lx.fail(fmt::format("expected {} (a positive decimal number), found '{}'", what, text[start]), start);
  }
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    std::size_t e = i++;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) ++i;
    if (!digits()) lx.fail(fmt::format("{}: the exponent has no digits", what), e);
  }
  if (i < text.size() && (std::isalnum(static_cast<unsigned char>(text[i])) || text[i] == '.') &&
      !(what == "latency" && std::isalpha(static_cast<unsigned char>(text[i]))))
    lx.fail(fmt::format("{} must be a decimal number; unexpected '{}'", what, text[i]), i);
  const double v = std::strtod(std::string(text.substr(start, i - start)).c_str(), nullptr);
  lx.skip_to(i);
  return v;
}

}  // namespace

Topology Topology::parse(std::string_view text) { return parse_impl(text, nullptr); }
Topology Topology::parse(std::string_view text, const Mesh& mesh) { return parse_impl(text, &mesh); }

// Grammar (whitespace free between tokens): entry {',' entry}; entry := axis '=' link;
// link := (preset | GB/s) [':' latency [ns|us|ms|s]]. Errors are ParseError with the position.
Topology Topology::parse_impl(std::string_view text, const Mesh* mesh) {
  Topology t;
  detail::Lexer lx(text, "topology");
  if (lx.at_end()) return t;
  bool seen_default = false;
  do {
    const std::size_t axis_pos = (lx.skip_ws(), lx.pos());
    std::string axis(lx.ident("an axis name (or 'default')"));
    if (axis != "default" && mesh && mesh->axis_index(axis) < 0)
      lx.fail(fmt::format("'{}' is not an axis of mesh {}", axis, *mesh), axis_pos);
    if (axis == "default" ? seen_default : t.links_.count(axis) > 0)
      lx.fail(fmt::format("axis '{}' is given twice", axis), axis_pos);
    lx.expect('=', fmt::format("after axis '{}' (entries are axis=link, e.g. tp=nvlink or dp=25:10us)", axis));
    Link l;
    const std::size_t bw_pos = (lx.skip_ws(), lx.pos());
    if (lx.at_ident()) {
      std::string_view name = lx.ident("a link preset");
      auto preset = std::find_if(std::begin(kPresets), std::end(kPresets), [&](const Preset& p) { return p.name == name; });
      if (preset == std::end(kPresets))
        lx.fail(fmt::format("unknown link preset '{}' (presets: nvlink, ib, pcie, eth, shm; or GB/s as a number)", name),
                bw_pos);
      l = preset->link;
    } else {
      l.bandwidth_GBps = decimal(lx, text, "bandwidth");
      if (!(l.bandwidth_GBps >= kMinBandwidthGBps && l.bandwidth_GBps <= kMaxBandwidthGBps))
        lx.fail(fmt::format("bandwidth {} GB/s is out of range [{:g}, {:g}]", text.substr(bw_pos, lx.pos() - bw_pos),
                            kMinBandwidthGBps, kMaxBandwidthGBps), bw_pos);
    }
    if (lx.accept(':')) {
      const std::size_t lat_pos = (lx.skip_ws(), lx.pos());
      double v = decimal(lx, text, "latency"), scale = 1;
      if (lx.at_ident()) {
        const std::size_t unit_pos = lx.pos();
        std::string_view unit = lx.ident("a latency unit");
        if (unit == "ns") scale = 1e-9;
        else if (unit == "us") scale = 1e-6;
        else if (unit == "ms") scale = 1e-3;
        else if (unit != "s") lx.fail(fmt::format("unknown latency unit '{}' (ns, us, ms or s)", unit), unit_pos);
      }
      l.latency_s = v * scale;
      if (!(l.latency_s > 0 && l.latency_s <= kMaxLatencyS))
        lx.fail(fmt::format("latency {} is out of range (0, {:g} s]", text.substr(lat_pos, lx.pos() - lat_pos),
                            kMaxLatencyS), lat_pos);
    }
    if (axis == "default") t.default_link = l, seen_default = true;
    else t.set(axis, l);
  } while (lx.accept(','));
  if (!lx.at_end()) lx.fail(fmt::format("unexpected '{}'; entries are separated by ','", lx.peek()));
  return t;
}

std::vector<std::string> Topology::axes() const {
  std::vector<std::string> r;
  for (const auto& [a, l] : links_) r.push_back(a);
  return r;
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

namespace {

// The axes of a dim that split it (size-1 axes split nothing).
std::vector<std::string> nontrivial(const Mesh& mesh, std::vector<std::string> v) {
  std::erase_if(v, [&](const std::string& x) { return mesh.axis_size(x) == 1; });
  return v;
}

// Whether `a`, size-1 axes left out, is a prefix of `b` likewise (no copies: the estimate is
// called for every candidate step of the search).
bool nontrivial_prefix(const Mesh& mesh, const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::size_t j = 0;
  for (const std::string& x : a) {
    if (mesh.axis_size(x) == 1) continue;
    while (j < b.size() && mesh.axis_size(b[j]) == 1) ++j;
    if (j == b.size() || b[j] != x) return false;
    ++j;
  }
  return true;
}

// The most bytes one device receives in an all_gather: its out-block less its in-block, at
// most over devices. A dim's in- and out-extents depend only on the device's block index
// along that dim (the out-axes are a major prefix of the in-axes), and the dims' axes are
// disjoint, so the device ranges over the product of each dim's (out, in) extent pairs. The
// difference of the products grows with each out-extent and falls with each in-extent: only
// pairs that no other pair of their dim beats in both can give the maximum, and with ceil
// blocks a dim has at most a few (full, short and empty blocks). Pairs pairing the largest
// out-block with the smallest in-block of different devices (the bound used before) made
// uneven gathers look dearer than they are.
std::int64_t all_gather_recv_max(const Mesh& mesh, const Step& step) {
  const std::int64_t elem = static_cast<std::int64_t>(size_of(step.in.dtype));
  using Pair = std::pair<std::int64_t, std::int64_t>;
  struct Front {  // at most one pair per stretch below
    Pair p[5];
    int n = 0;
  };
  // On the stack for the ranks arrays have in practice: the search prices every candidate step.
  constexpr int kInline = 8;
  Front inline_front[kInline];
  std::vector<Front> heap_front(step.in.rank() > kInline ? static_cast<std::size_t>(step.in.rank()) : 0);
  Front* front = step.in.rank() > kInline ? heap_front.data() : inline_front;
  std::size_t combos = 1;
  bool exact = true;
  for (int d = 0; d < step.in.rank() && exact; ++d) {
    const std::int64_t n = step.in.dims[d].size;
    const std::int64_t ki = step.in.num_blocks(mesh, d), ko = step.out.num_blocks(mesh, d);
    exact = ko > 0 && ki % ko == 0 && nontrivial_prefix(mesh, step.out.dims[d].axes, step.in.dims[d].axes);
    if (!exact) break;
    const std::int64_t r = ki / ko;
    const std::int64_t qi = (n + ki - 1) / ki, qo = (n + ko - 1) / ko;
    const std::int64_t bi = qi > 0 ? n / qi : 0, bo = qo > 0 ? n / qo : 0;
    // The extents are constant between these block indices: one of each stretch.
    Pair pairs[5];
    int np = 0;
    for (std::int64_t b : {std::int64_t{0}, bi, bi + 1, bo * r, (bo + 1) * r})
      if (b >= 0 && b < ki) pairs[np++] = {ceil_block(n, ko, b / r).extent(), ceil_block(n, ki, b).extent()};
    Front& f = front[d];
    for (int a = 0; a < np; ++a) {
      bool beaten = false;
      for (int o = 0; o < np; ++o)
        beaten = beaten || (pairs[o] != pairs[a] && pairs[o].first >= pairs[a].first && pairs[o].second <= pairs[a].second);
      if (!beaten && std::find(f.p, f.p + f.n, pairs[a]) == f.p + f.n) f.p[f.n++] = pairs[a];
    }
    combos *= static_cast<std::size_t>(f.n);
    exact = combos <= 4096;
  }
  if (!exact) {
    // At most the largest out-block less the smallest in-block (the last block along every
    // dim, which one device holds; with uneven blocks it is short or empty).
    std::int64_t in_min = elem;
    for (int d = 0; d < step.in.rank(); ++d) {
      std::int64_t k = step.in.num_blocks(mesh, d);
      in_min *= ceil_block(step.in.dims[d].size, k, k - 1).extent();
    }
    return std::max<std::int64_t>(0, step.out.max_local_bytes(mesh) - in_min);
  }
  std::int64_t best = 0;
  for (std::size_t c = 0; c < combos; ++c) {
    std::size_t rest = c;
    std::int64_t o = elem, i = elem;
    for (int d = 0; d < step.in.rank(); ++d) {
      const Front& f = front[d];
      const Pair& p = f.p[rest % static_cast<std::size_t>(f.n)];
      rest /= static_cast<std::size_t>(f.n);
      o *= p.first;
      i *= p.second;
    }
    best = std::max(best, o - i);
  }
  return best;
}

}  // namespace

std::int64_t estimate_step_bytes(const Mesh& mesh, const Step& step) {
  if (!step.communicates()) return 0;
  std::int64_t in = step.in.max_local_bytes(mesh), out = step.out.max_local_bytes(mesh);
  double g = 1;
  for (const auto& a : step.axes) g *= mesh.axis_size(a);
  switch (step.op) {
    case Op::all_gather: return all_gather_recv_max(mesh, step);
    case Op::all_to_all: {
      // With even blocks a device keeps 1/g of its out-block (g: the axes that change dim)
      // when every dim only loses or only gains minor axes. A dim that does both (axes
      // swapped between dims) has devices whose in- and out-blocks along it are disjoint:
      // they receive their whole out-block.
      double moved = 1;
      for (int d = 0; d < step.in.rank(); ++d) {
        const auto a = nontrivial(mesh, step.in.dims[d].axes);
        const auto b = nontrivial(mesh, step.out.dims[d].axes);
        std::size_t p = 0;
        while (p < a.size() && p < b.size() && a[p] == b[p]) ++p;
        if (p < a.size() && p < b.size()) return out;
        for (std::size_t k = p; k < a.size(); ++k) moved *= mesh.axis_size(a[k]);
      }
      return static_cast<std::int64_t>(out * (1 - 1 / (moved > 1 ? moved : g)));
    }
    case Op::permute: return out;
    // Each other member sends a device its share of the out-block; with uneven blocks the
    // largest share is more than in / g.
    case Op::reduce_scatter: return static_cast<std::int64_t>((g - 1) * static_cast<double>(out));
    case Op::all_reduce: return static_cast<std::int64_t>(2 * in * (1 - 1 / g));
    default: break;
  }
  // Exchange moves exactly what a device lacks: its out-block less what its in-block holds.
  // Every device up to 4,096, a spread sample beyond.
  // 64-bit: on a mesh near INT_MAX devices `d + stride` passes INT_MAX.
  const std::int64_t P = mesh.num_devices();
  const std::int64_t stride = std::max<std::int64_t>(1, P / 4096);
  detail::IndexedType tin(step.in, mesh), tout(step.out, mesh);
  std::int64_t worst = 0;
  for (std::int64_t d = 0; d < P; d += stride) {
    std::vector<int> c = detail::coords_of(mesh, static_cast<int>(d));
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
