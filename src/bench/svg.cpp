// The chart of `reshard bench --svg`: a standalone SVG (no tools to install), four panels of
// grouped bars, one group per case that ran and one bar per strategy:
//   1. median time per iteration, absolute, log scale, with a min-max error bar;
//   2. speedup of reshard over each other strategy (its time / reshard's), log scale, with the
//      paired interquartile range over rounds as error bar;
//   3. bytes received by the busiest device;
//   4. peak memory per device.
// A strategy whose plan is reshard's, step for step (timed once), is drawn as an outlined "="
// marker at 1x in the speedup panel, so that it is visible rather than a bar of zero height.
// Every bar carries its exact value as a tooltip (<title>).
#include <algorithm>
#include <cmath>
#include <functional>

#include <fmt/format.h>

#include "bench.hpp"

namespace reshard::bench {

namespace {

const char* color_of(const std::string& strategy) {
  if (strategy == "reshard") return "#1f77b4";
  if (strategy == "naive") return "#d62728";
  if (strategy == "greedy_per_axis") return "#ff7f0e";
  if (strategy == "exchange") return "#2ca02c";
  if (strategy == "dtensor") return "#9467bd";
  return "#7f7f7f";  // raw
}

std::string escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

struct Layout {
  double left = 70, group_w = 0, bar_w = 0, plot_h = 170, label_h = 80, title_h = 28;
  double panel_h() const { return title_h + plot_h + label_h; }
};

enum class Scale { linear, ratio, time };  // from 0; log2 around 1; log10 from the bottom

// One panel: a value axis and grouped bars, optionally with an error bar per bar.
struct Panel {
  std::string title;
  std::vector<std::string> strategies;  // bars of each group, in order
  std::function<std::optional<double>(const CaseResult&, const Row&)> value;
  std::function<std::string(double)> label;
  Scale scale = Scale::linear;
  std::function<std::optional<std::pair<double, double>>(const CaseResult&, const Row&)> range;  // error bar
  bool mark_same_plan = false;  // rows sharing reshard's plan: an "=" marker at 1 instead of a bar
};

std::string draw(const Panel& p, const std::vector<const CaseResult*>& cases, const Layout& L, double top) {
  std::vector<double> vals;
  for (const CaseResult* c : cases)
    for (const std::string& s : p.strategies)
      if (const Row* r = c->row(s))
        if (auto v = p.value(*c, *r); v && *v > 0) vals.push_back(*v);
  if (p.range)
    for (const CaseResult* c : cases)
      for (const std::string& s : p.strategies)
        if (const Row* r = c->row(s))
          if (auto rg = p.range(*c, *r); rg && rg->first > 0) vals.push_back(rg->first), vals.push_back(rg->second);
  const bool log = p.scale != Scale::linear;
  double lo = 0, hi = 1, step = 0.25;  // log axes: exponents (of 2 or 10); linear: values
  if (p.scale == Scale::ratio) {
    lo = -1, hi = 1, step = 1;  // 0.5x to 2x at least
    for (double v : vals) lo = std::min(lo, std::floor(std::log2(v))), hi = std::max(hi, std::ceil(std::log2(v)));
  } else if (p.scale == Scale::time) {
    lo = 0, hi = -300, step = 1;
    for (double v : vals) hi = std::max(hi, std::ceil(std::log10(v)));
    lo = hi - 1;
    for (double v : vals) lo = std::min(lo, std::floor(std::log10(v)));
  } else {
    for (double v : vals) hi = std::max(hi, v);
    // About four ticks at 1, 2, 2.5 or 5 times a power of ten.
    const double mag = std::pow(10.0, std::floor(std::log10(hi / 4)));
    for (double f : {1.0, 2.0, 2.5, 5.0, 10.0})
      if ((step = f * mag) * 4 >= hi) break;
    hi = std::ceil(hi / step) * step;
  }
  const double y0 = top + L.title_h, y1 = y0 + L.plot_h;
  auto exponent = [&](double v) { return p.scale == Scale::ratio ? std::log2(v) : std::log10(v); };
  auto y_of = [&](double v) {
    const double t = log ? (exponent(std::max(v, 1e-300)) - lo) / (hi - lo) : v / hi;
    return y1 - std::clamp(t, 0.0, 1.0) * L.plot_h;
  };
  const double width = L.left + L.group_w * static_cast<double>(cases.size());
  std::string out = fmt::format("<text x=\"{}\" y=\"{}\" class=\"title\">{}</text>\n", L.left, top + 18, escape(p.title));
  // Grid and ticks.
  std::vector<double> ticks;
  for (double t = lo; t <= hi + step / 2; t += step)
    ticks.push_back(p.scale == Scale::ratio ? std::exp2(t) : p.scale == Scale::time ? std::pow(10.0, t) : t);
  for (double t : ticks) {
    const double y = y_of(t);
    const bool one = p.scale == Scale::ratio && t == 1.0;
    out += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" class=\"{}\"/>\n", L.left, y, width, y,
                       one ? "one" : "grid");
    out += fmt::format("<text x=\"{}\" y=\"{:.1f}\" class=\"tick\">{}</text>\n", L.left - 6, y + 4, p.label(t));
  }
  // Bars and case labels.
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const CaseResult& c = *cases[i];
    const double gx = L.left + L.group_w * static_cast<double>(i);
    double x = gx + (L.group_w - L.bar_w * static_cast<double>(p.strategies.size())) / 2;
    for (const std::string& s : p.strategies) {
      const Row* r = c.row(s);
      std::optional<double> v = r ? p.value(c, *r) : std::nullopt;
      if (v && *v > 0 && p.mark_same_plan && r->same_plan_as == "reshard") {
        // Same plan as reshard: 1x by construction. An outlined box across the 1x line, with "=".
        const double y = y_of(1.0);
        out += fmt::format(
            "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"10\" fill=\"white\" stroke=\"{}\" "
            "stroke-width=\"2\"><title>{} {}: the same plan as reshard (timed once)</title></rect>\n"
            "<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" text-anchor=\"middle\" fill=\"{}\">=</text>\n",
            x + 1, y - 5, L.bar_w - 3, color_of(s), escape(c.spec.name), s, x + L.bar_w / 2 - 0.5, y + 3.5, color_of(s));
      } else if (v && *v > 0) {
        const double base = p.scale == Scale::ratio ? y_of(1.0) : y1, y = y_of(*v);
        out += fmt::format(
            "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"><title>{} {}: {}</title></rect>\n",
            x, std::min(base, y), L.bar_w - 1, std::max(std::fabs(base - y), 1.0), color_of(s), escape(c.spec.name), s,
            p.label(*v));
        if (auto rg = p.range ? p.range(c, *r) : std::nullopt; rg && rg->first > 0) {
          const double ya = y_of(rg->first), yb = y_of(rg->second), xm = x + (L.bar_w - 1) / 2;
          out += fmt::format(
              "<path d=\"M{0:.1f},{1:.1f}V{2:.1f}M{3:.1f},{1:.1f}H{4:.1f}M{3:.1f},{2:.1f}H{4:.1f}\" class=\"err\">"
              "<title>{5} {6}: {7} to {8}</title></path>\n",
              xm, ya, yb, xm - 3, xm + 3, escape(c.spec.name), s, p.label(rg->first), p.label(rg->second));
        }
      }
      x += L.bar_w;
    }
    out += fmt::format("<text transform=\"translate({:.1f},{:.1f}) rotate(-35)\" class=\"case\">{}</text>\n",
                       gx + L.group_w / 2 + 4, y1 + 14, escape(c.spec.name));
  }
  out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"axis\"/>\n", L.left, y0, L.left, y1);
  return out;
}

std::optional<double> mib(std::int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }
std::string time_label(double s) {
  return s >= 1 ? fmt::format("{:.3g} s", s) : s >= 1e-3 ? fmt::format("{:.3g} ms", s * 1e3) : fmt::format("{:.3g} us", s * 1e6);
}
std::string mib_label(double m) { return fmt::format("{:.4g} MiB", m); }

}  // namespace

std::string to_svg(const Report& rep, const Summary& sum) {
  std::vector<const CaseResult*> cases;
  for (const CaseResult& c : rep.cases)
    if (c.ran && !c.rows.empty()) cases.push_back(&c);
  std::vector<std::string> others;
  for (const std::string& s : rep.strategies)
    if (s != "reshard") others.push_back(s);

  Layout L;
  L.bar_w = 13;
  L.group_w = std::max(64.0, L.bar_w * static_cast<double>(rep.strategies.size()) + 14);
  const double width = std::max(860.0, L.left + L.group_w * static_cast<double>(cases.size()) + 20);
  const double head = 64;

  auto ratio_label = [](double v) { return v >= 1 ? fmt::format("{:.3g}x", v) : fmt::format("{:.2g}x", v); };
  std::vector<Panel> panels = {
      {"Median time per iteration (max across ranks; error bar: fastest to slowest iteration)", rep.strategies,
       [](const CaseResult&, const Row& r) -> std::optional<double> { return r.time.median_s; }, time_label, Scale::time,
       [](const CaseResult&, const Row& r) -> std::optional<std::pair<double, double>> {
         return std::pair{r.time.min_s, r.time.max_s};
       }},
      {"Speedup of reshard (strategy's median / reshard's; above 1: reshard faster; error bar: paired IQR; "
       "\"=\": same plan)",
       others, [](const CaseResult& c, const Row& r) { return reshard_speedup(c, r); }, ratio_label, Scale::ratio,
       [](const CaseResult& c, const Row& r) -> std::optional<std::pair<double, double>> {
         if (auto q = paired_speedup(c, r)) return std::pair{q->q1, q->q3};
         return std::nullopt;
       },
       true},
      {"Bytes received by the busiest device", rep.strategies,
       [](const CaseResult&, const Row& r) { return mib(r.bytes_recv_max); }, mib_label},
      {"Peak memory per device (source + target + executor workspace; raw: its buffers)", rep.strategies,
       [](const CaseResult&, const Row& r) { return mib(r.peak_bytes); }, mib_label}};
  const double height = head + L.panel_h() * static_cast<double>(panels.size()) + 10;

  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
      "font-family=\"sans-serif\">\n"
      "<style>.title{{font-size:13px;font-weight:bold}} .tick{{font-size:10px;text-anchor:end}} "
      ".case{{font-size:10px;text-anchor:end}} .grid{{stroke:#ddd}} .one{{stroke:#333;stroke-dasharray:4 3}} "
      ".axis{{stroke:#333}} .err{{stroke:#000;stroke-width:1.2;fill:none}} .legend{{font-size:11px}} .sub{{font-size:10px;fill:#555}}</style>\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, height, width, height);
  std::string geo;
  for (const Versus& v : sum.versus)
    if (v.other != "raw")
      geo += fmt::format("{}{} {:.2f}x", geo.empty() ? "geometric-mean speedup of reshard over " : ", ", v.other, v.geomean);
  for (const Versus& v : sum.versus)
    if (v.other == "raw") geo += fmt::format("; {:.2f} of raw's speed", v.geomean);
  out += fmt::format("<text x=\"10\" y=\"18\" class=\"title\">reshard bench: {} on {} ranks</text>\n",
                     escape(rep.suite), rep.ranks);
  out += fmt::format("<text x=\"10\" y=\"34\" class=\"sub\">time per iteration: max across ranks; median of {} "
                     "iterations. {}</text>\n",
                     rep.iters, escape(geo));
  double lx = 10;
  for (const std::string& s : rep.strategies) {
    out += fmt::format("<rect x=\"{:.0f}\" y=\"44\" width=\"12\" height=\"12\" fill=\"{}\"/>", lx, color_of(s));
    out += fmt::format("<text x=\"{:.0f}\" y=\"54\" class=\"legend\">{}</text>\n", lx + 16, s);
    lx += 30 + 7.0 * static_cast<double>(s.size());
  }
  for (std::size_t i = 0; i < panels.size(); ++i) out += draw(panels[i], cases, L, head + L.panel_h() * static_cast<double>(i));
  return out + "</svg>\n";
}

}  // namespace reshard::bench
