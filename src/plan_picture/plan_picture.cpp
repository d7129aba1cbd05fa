// Plan pictures (plan_picture.hpp): blocks per device per step, as text and as SVG.
#include "plan_picture.hpp"

#include <algorithm>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "reshard/error.hpp"

namespace reshard::picture {

namespace {

// The dims to draw: all of them up to rank 2; above, the two largest that some type of the
// plan splits (ties: the earlier dim), topped up with the largest unsplit ones. Rows first.
std::vector<int> shown_dims(const Plan& plan) {
  const Type& t = plan.src;
  std::vector<int> all(static_cast<std::size_t>(t.rank()));
  std::iota(all.begin(), all.end(), 0);
  if (t.rank() <= 2) return all;
  auto split = [&](int d) {
    if (!plan.src.dims[d].axes.empty()) return true;
    for (const Step& s : plan.steps)
      if (!s.out.dims[d].axes.empty()) return true;
    return false;
  };
  std::stable_sort(all.begin(), all.end(), [&](int a, int b) {
    if (split(a) != split(b)) return split(a);
    return t.dims[a].size > t.dims[b].size;
  });
  all.resize(2);
  std::sort(all.begin(), all.end());
  return all;
}

Frame frame_of(const Mesh& mesh, const Type& type, const std::vector<int>& dims) {
  Frame f;
  f.type = type;
  std::map<std::vector<std::int64_t>, std::size_t> index;  // projected box -> blocks[i]
  for (int d = 0; d < mesh.num_devices(); ++d) {
    const Box full = type.block(mesh, d);
    if (full.empty()) {
      f.empty.push_back(d);
      continue;
    }
    Box shown;
    std::vector<std::int64_t> key;
    for (int k : dims) {
      shown.dims.push_back(full.dims[k]);
      key.push_back(full.dims[k].lo), key.push_back(full.dims[k].hi);
    }
    auto [it, added] = index.emplace(key, f.blocks.size());
    if (added) f.blocks.push_back({shown, {}});
    f.blocks[it->second].devices.push_back(d);
  }
  return f;
}

// "0-3,6,9-10"
std::string device_list(const std::vector<int>& ds) {
  std::string out;
  for (std::size_t i = 0; i < ds.size();) {
    std::size_t j = i;
    while (j + 1 < ds.size() && ds[j + 1] == ds[j] + 1) ++j;
    out += fmt::format("{}{}", out.empty() ? "" : ",", ds[i]);
    if (j > i) out += fmt::format("{}{}", j == i + 1 ? "," : "-", ds[j]);
    i = j + 1;
  }
  return out;
}

std::string human_bytes(std::int64_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < (1 << 20)) return fmt::format("{:.1f} KiB", static_cast<double>(b) / 1024);
  if (b < (1 << 30)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1 << 20));
  return fmt::format("{:.2f} GiB", static_cast<double>(b) / (1 << 30));
}

std::string box_text(const Box& b) {
  if (b.dims.empty()) return "scalar";
  std::string s;
  for (const Interval& iv : b.dims) s += fmt::format("{}[{}, {})", s.empty() ? "" : " x ", iv.lo, iv.hi);
  return s;
}

std::string pending_note(const Type& t) {
  if (t.op == ReduceOp::none) return "";
  return fmt::format("pending {} over {{{}}}: the holders of a block each hold a partial value", t.op,
                     fmt::join(t.reduce_axes, ","));
}

std::string step_traffic(const Frame& f) {
  return fmt::format("received: at most {} per device", human_bytes(f.recv_max_bytes));
}

constexpr std::string_view kLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

// Index of the block holding global point (i, j) of the shown dims, or -1.
int holder_at(const Frame& f, const std::vector<std::int64_t>& point) {
  for (std::size_t b = 0; b < f.blocks.size(); ++b) {
    const Box& box = f.blocks[b].box;
    bool in = true;
    for (std::size_t k = 0; k < point.size(); ++k) in = in && box.dims[k].lo <= point[k] && point[k] < box.dims[k].hi;
    if (in) return static_cast<int>(b);
  }
  return -1;
}

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

}  // namespace

View view_of(const Plan& plan) {
  View v;
  v.mesh = plan.mesh.to_string();
  v.devices = plan.mesh.num_devices();
  v.dims = shown_dims(plan);
  for (int d : v.dims) v.extent.push_back(plan.src.dims[d].size);
  Frame src = frame_of(plan.mesh, plan.src, v.dims);
  src.label = "source";
  v.frames.push_back(std::move(src));
  for (std::size_t k = 0; k < plan.steps.size(); ++k) {
    const Step& s = plan.steps[k];
    Frame f = frame_of(plan.mesh, s.out, v.dims);
    f.step = static_cast<int>(k + 1);
    f.label = s.axes.empty() ? fmt::format("{}. {}", k + 1, s.op) : fmt::format("{}. {} {{{}}}", k + 1, s.op, fmt::join(s.axes, ","));
    // The plan's own figure (PlanStats), so that picture and `plan` output agree; reductions are
    // counted as ring algorithms move them.
    f.recv_max_bytes = k < plan.stats.step_bytes_recv_max.size() ? plan.stats.step_bytes_recv_max[k] : 0;
    v.frames.push_back(std::move(f));
  }
  return v;
}

std::string to_text(const View& v, int max_rows, int max_cols) {
  const int rank = static_cast<int>(v.dims.size());
  const std::int64_t n0 = rank >= 1 ? v.extent[0] : 1, n1 = rank == 2 ? v.extent[1] : 1;
  // 1-D arrays lie along one row of cells.
  const std::int64_t rows = rank == 2 ? std::min<std::int64_t>(n0, max_rows) : 1;
  const std::int64_t cols = rank == 2 ? std::min<std::int64_t>(n1, max_cols) : std::min<std::int64_t>(n0, max_cols);
  std::string out = fmt::format("plan picture on mesh {} ({} devices)", v.mesh, v.devices);
  if (rank == 2) out += fmt::format("; rows: dim {} ({}), columns: dim {} ({})", v.dims[0], n0, v.dims[1], n1);
  else if (rank == 1) out += fmt::format("; dim {} ({}) left to right", v.dims[0], n0);
  if (const int r = v.frames.front().type.rank(); r > 2)
    out += fmt::format(" ({} dims not shown: devices that differ only there share a block)", r - 2);
  out += fmt::format("; one letter per block, {} x {} cells\n", rows, cols);
  for (const Frame& f : v.frames) {
    if (f.blocks.size() > kLetters.size())
      throw Error(fmt::format("plan --show: {} holds {} distinct blocks, more than the {} letters of the text picture; "
                              "use --svg", f.type, f.blocks.size(), kLetters.size()));
    out += fmt::format("\n{}  {}", f.label, f.type);
    if (f.step > 0) out += "  " + step_traffic(f);
    out += "\n";
    const std::string rule = fmt::format("  +{}+\n", std::string(static_cast<std::size_t>(cols), '-'));
    out += rule;
    for (std::int64_t r = 0; r < rows; ++r) {
      out += "  |";
      for (std::int64_t c = 0; c < cols; ++c) {
        std::vector<std::int64_t> point;
        if (rank == 2) point = {r * n0 / rows, c * n1 / cols};
        else if (rank == 1) point = {c * n0 / cols};
        const int b = holder_at(f, point);
        out += b < 0 ? '.' : kLetters[static_cast<std::size_t>(b)];
      }
      out += "|\n";
    }
    out += rule;
    for (std::size_t b = 0; b < f.blocks.size(); ++b)
      out += fmt::format("  {} {:<28} device{} {}\n", kLetters[b], box_text(f.blocks[b].box),
                         f.blocks[b].devices.size() > 1 ? "s" : "", device_list(f.blocks[b].devices));
    if (!f.empty.empty()) out += fmt::format("  (empty blocks on device(s) {})\n", device_list(f.empty));
    if (std::string note = pending_note(f.type); !note.empty()) out += "  " + note + "\n";
  }
  return out;
}

std::string to_svg(const View& v) {
  const int rank = static_cast<int>(v.dims.size());
  const double n0 = rank >= 1 ? static_cast<double>(v.extent[0]) : 1, n1 = rank == 2 ? static_cast<double>(v.extent[1]) : 1;
  // The array's drawing: at most 240 x 170 px, aspect ratio kept within 1:4..4:1; 1-D arrays are
  // one band, drawn left to right.
  double w = 240, h = 170;
  if (rank == 2) {
    const double aspect = std::clamp(n1 / n0, 0.25, 4.0);
    if (aspect * h > w) h = w / aspect;
    else w = aspect * h;
  } else {
    h = 44;
  }
  const double pw = 280, title_h = 62, ph = title_h + h + 34;
  const int per_row = std::min<int>(4, static_cast<int>(v.frames.size()));
  const int rows = (static_cast<int>(v.frames.size()) + per_row - 1) / per_row;
  const double width = std::max(700.0, 20 + per_row * pw), height = 50 + rows * ph + 16;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" viewBox=\"0 0 {:.0f} {:.0f}\" "
      "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
      width, height, width, height);
  std::string sub = rank == 2   ? fmt::format("rows: dim {} ({}), columns: dim {} ({})", v.dims[0], v.extent[0], v.dims[1], v.extent[1])
                    : rank == 1 ? fmt::format("dim {} ({}) left to right", v.dims[0], v.extent[0])
                                : std::string("a scalar");
  s += fmt::format("<text x=\"20\" y=\"24\" font-size=\"16\" font-weight=\"bold\">Blocks per device on mesh {} ({} devices)</text>\n",
                   xml_escape(v.mesh), v.devices);
  if (const int r = v.frames.front().type.rank(); r > 2) sub += fmt::format(" ({} dims not shown)", r - 2);
  s += fmt::format("<text x=\"20\" y=\"42\" font-size=\"12\" fill=\"#444\">{}; numbers: the devices holding each block; "
                   "colour: its first holder</text>\n", xml_escape(sub));
  for (std::size_t i = 0; i < v.frames.size(); ++i) {
    const Frame& f = v.frames[i];
    const double x0 = 20 + static_cast<double>(i % per_row) * pw, y0 = 50 + static_cast<double>(i / per_row) * ph;
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"13\" font-weight=\"bold\">{}</text>\n", x0, y0 + 16,
                     xml_escape(f.label));
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\">{}</text>\n", x0, y0 + 32, xml_escape(f.type.to_string()));
    const std::string traffic =
        f.step > 0 ? fmt::format("received: at most {} per device", human_bytes(f.recv_max_bytes)) : std::string("before the plan");
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"11\" fill=\"#1a5fb4\">{}</text>\n", x0, y0 + 48, xml_escape(traffic));
    const double ay = y0 + title_h;
    s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"#eee\" stroke=\"#333\"/>\n", x0, ay, w, h);
    for (const Holding& b : f.blocks) {
      double bx = x0, by = ay, bw = w, bh = h;
      if (rank >= 1) {
        const Interval& a = b.box.dims[0];
        const double lo = static_cast<double>(a.lo) / n0, hi = static_cast<double>(a.hi) / n0;
        if (rank == 2) by = ay + lo * h, bh = (hi - lo) * h;
        else bx = x0 + lo * w, bw = (hi - lo) * w;
      }
      if (rank == 2) {
        const Interval& c = b.box.dims[1];
        bx = x0 + static_cast<double>(c.lo) / n1 * w, bw = static_cast<double>(c.extent()) / n1 * w;
      }
      const double hue = 360.0 * b.devices.front() / std::max(1, v.devices);
      s += fmt::format("<rect x=\"{:.2f}\" y=\"{:.2f}\" width=\"{:.2f}\" height=\"{:.2f}\" fill=\"hsl({:.0f},65%,{}%)\" "
                       "stroke=\"#222\" stroke-width=\"1\"/>\n",
                       bx, by, bw, bh, hue, f.type.op == ReduceOp::none ? 78 : 88);
      const std::string who = device_list(b.devices);
      const double font = std::min(12.0, std::min(bh * 0.6, bw / (0.62 * static_cast<double>(who.size()) + 0.5)));
      if (font >= 5)
        s += fmt::format("<text x=\"{:.2f}\" y=\"{:.2f}\" font-size=\"{:.1f}\" text-anchor=\"middle\" "
                         "dominant-baseline=\"central\">{}</text>\n",
                         bx + bw / 2, by + bh / 2, font, who);
    }
    std::string foot;
    if (!f.empty.empty()) foot = fmt::format("empty on device(s) {}", device_list(f.empty));
    if (f.type.op != ReduceOp::none)
      foot += fmt::format("{}pending {} over {{{}}} (pale: partial values)", foot.empty() ? "" : "; ", f.type.op,
                          fmt::join(f.type.reduce_axes, ","));
    if (!foot.empty())
      s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" fill=\"#444\">{}</text>\n", x0, ay + h + 16, xml_escape(foot));
  }
  s += "</svg>\n";
  return s;
}

}  // namespace reshard::picture
