// Cross-mesh and batched planning (xplan.hpp). Pure: boxes and ranks, no data.
//
// How a plan is made, per array:
//  - a pending reduction in the source is removed on the source mesh first (`pre`, an ordinary
//    plan: mostly one reduce-scatter), giving `mid`, a type without one;
//  - mid's blocks tile the global array; each distinct block is held by one or more world
//    ranks (replicas). Every target rank's block is cut along that tiling: pieces of its own
//    source block are local copies, the others are requested from the block's holders;
//  - requests of one block go to the least loaded holder (load = bytes sent so far, over the
//    whole batch), or, when many receivers want the very same piece, through a broadcast tree
//    when the cost model says that is faster;
//  - moves are cut into buckets under the memory cap, then sorted into phases (bucket, round).
#include "reshard/xplan.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "reshard/error.hpp"
#include "xplan_detail.hpp"

namespace reshard {

using xdetail::is_contiguous;

void check_compatible(const Mesh& src_mesh, const Mesh& dst_mesh, const XArray& a) {
  auto where = [&] { return a.name.empty() ? std::string() : fmt::format("array '{}': ", a.name); };
  try {
    a.src.validate(src_mesh.without_ranks());
  } catch (const Error& e) {
    throw MismatchError(fmt::format("{}source type {} on mesh {}: {}", where(), a.src, src_mesh, e.what()));
  }
  try {
    a.dst.validate(dst_mesh.without_ranks());
  } catch (const Error& e) {
    throw MismatchError(fmt::format("{}target type {} on mesh {}: {}", where(), a.dst, dst_mesh, e.what()));
  }
  if (a.src.dtype != a.dst.dtype)
    throw MismatchError(fmt::format("{}dtypes differ: source {} is {}, target {} is {}", where(), a.src,
                                    a.src.dtype, a.dst, a.dst.dtype));
  if (a.src.global_shape() != a.dst.global_shape())
    throw MismatchError(fmt::format("{}global shapes differ: source {} has [{}], target {} has [{}]", where(), a.src,
                                    fmt::join(a.src.global_shape(), ", "), a.dst,
                                    fmt::join(a.dst.global_shape(), ", ")));
  if (a.src.op != ReduceOp::none && a.dst.op != ReduceOp::none && a.src.op != a.dst.op)
    throw MismatchError(fmt::format("{}the reduction changes from {} to {}; a pending {} cannot become a {}", where(),
                                    a.src.op, a.dst.op, a.src.op, a.dst.op));
}

namespace {

// The source type without its pending reduction: the reduced axes become the minor end of the
// largest dim (a reduce-scatter there keeps shards small). Rank 0: an all-reduce.
Type without_reduction(const Type& t) {
  Type m = t;
  if (t.op == ReduceOp::none) return m;
  m.op = ReduceOp::none;
  m.reduce_axes.clear();
  if (!m.dims.empty()) {
    std::size_t best = 0;
    for (std::size_t d = 1; d < m.dims.size(); ++d)
      if (m.dims[d].size > m.dims[best].size) best = d;
    for (const auto& a : t.reduce_axes) m.dims[best].axes.push_back(a);
  }
  return m;
}

using Key = std::vector<std::int64_t>;  // block index along each dim

// Block index tuple of `device` under `t`.
Key key_of(const Type& t, const Mesh& m, int device) {
  Key k(t.dims.size());
  for (int d = 0; d < t.rank(); ++d) k[d] = t.block_index(m, d, device);
  return k;
}

// Whether a target device holds data (not a non-lead member of a pending reduction's group).
bool target_lead(const Type& t, const Mesh& m, int device) {
  for (const auto& a : t.reduce_axes)
    if (m.coord(device, m.axis_index(a)) != 0) return false;
  return true;
}

struct Request {
  int to;     // world rank
  Box piece;  // global indices
};

// Splits `b` into boxes of at most `limit` bytes (pre: limit >= elem), outermost dims first.
void split_box(const Box& b, std::int64_t elem, std::int64_t limit, std::vector<Box>& out) {
  if (b.volume() * elem <= limit) {
    out.push_back(b);
    return;
  }
  int d = 0;
  while (b.dims[d].extent() == 1) ++d;  // volume > 1 element, so some dim has extent > 1
  std::int64_t inner = elem;
  for (std::size_t j = d + 1; j < b.dims.size(); ++j) inner *= b.dims[j].extent();
  const std::int64_t rows = std::max<std::int64_t>(1, limit / inner);
  for (std::int64_t lo = b.dims[d].lo; lo < b.dims[d].hi; lo += rows) {
    Box s = b;
    s.dims[d] = {lo, std::min(b.dims[d].hi, lo + rows)};
    split_box(s, elem, limit, out);  // recurses only when one row is still too large
  }
}

}  // namespace

XPlan plan_batch(const Mesh& src_mesh, const Mesh& dst_mesh, std::vector<XArray> arrays, const XOptions& opts) {
  XPlan p;
  p.src_mesh = src_mesh;
  p.dst_mesh = dst_mesh;
  p.world = std::max(src_mesh.ranks_needed(), dst_mesh.ranks_needed());
  p.memory_cap = opts.memory_cap;
  if (opts.direct_min_bytes < 1) throw Error("XOptions::direct_min_bytes must be at least 1 byte");
  p.direct_min_bytes = opts.direct_min_bytes;
  if (arrays.empty()) throw MismatchError("a batch needs at least one array");
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j)
      if (!arrays[i].name.empty() && arrays[i].name == arrays[j].name)
        throw MismatchError(fmt::format("array '{}' appears twice in the batch", arrays[i].name));
    check_compatible(src_mesh, dst_mesh, arrays[i]);
  }
  p.arrays = std::move(arrays);
  const Mesh sm = src_mesh.without_ranks(), dm = dst_mesh.without_ranks();
  const int W = p.world;
  XStats& st = p.stats;
  st.bytes_recv.assign(W, 0);
  st.lower_bound.assign(W, 0);
  st.bytes_sent.assign(W, 0);
  st.workspace.assign(W, 0);
  st.calls.assign(W, 0);
  std::vector<std::int64_t> load(W, 0);  // bytes each rank sends, for spreading
  std::vector<XMove> moves;

  for (int ai = 0; ai < static_cast<int>(p.arrays.size()); ++ai) {
    const XArray& a = p.arrays[ai];
    const std::int64_t elem = static_cast<std::int64_t>(size_of(a.src.dtype));
    Type mid = without_reduction(a.src);
    Plan pre;
    if (a.src.op != ReduceOp::none) {
      pre = synthesize(src_mesh, a.src, mid, opts.synth);
      st.pre_bytes_recv_max = std::max(st.pre_bytes_recv_max, pre.stats.bytes_recv_max);
    } else {
      pre.mesh = src_mesh;
      pre.src = pre.dst = a.src;
    }
    st.src_local_bytes = std::max(st.src_local_bytes, a.src.max_local_bytes(sm));
    st.dst_local_bytes = std::max(st.dst_local_bytes, a.dst.max_local_bytes(dm));
    // Holders of every distinct block of mid, in device order.
    std::map<Key, std::vector<int>> holders;
    for (int d = 0; d < sm.num_devices(); ++d) holders[key_of(mid, sm, d)].push_back(src_mesh.rank_of(d));
    std::map<Key, std::vector<Request>> requests;
    std::vector<std::int64_t> recv_here(W, 0), bound_here(W, 0);
    for (int t = 0; t < dm.num_devices(); ++t) {
      if (!target_lead(a.dst, dm, t)) continue;
      const Box T = a.dst.block(dm, t);
      if (T.empty()) continue;
      const int rt = dst_mesh.rank_of(t);
      const int s = src_mesh.device_of(rt);
      Key own;
      Box S;
      if (s >= 0) {
        own = key_of(mid, sm, s);
        S = mid.block(sm, s);
      }
      bound_here[rt] = (T.volume() - (s >= 0 ? intersect(T, S).volume() : 0)) * elem;
      // The source blocks T overlaps: per dim, the block indices whose intervals meet T's.
      std::vector<std::pair<std::int64_t, std::int64_t>> range(mid.rank());
      for (int d = 0; d < mid.rank(); ++d) {
        const std::int64_t n = mid.num_blocks(sm, d), N = mid.dims[d].size;
        const std::int64_t B = (N + n - 1) / n;
        range[d] = {T.dims[d].lo / B, std::min(n - 1, (T.dims[d].hi - 1) / B)};
      }
      Key k(mid.rank());
      for (int d = 0; d < mid.rank(); ++d) k[d] = range[d].first;
      for (;;) {
        Box blk;
        for (int d = 0; d < mid.rank(); ++d) blk.dims.push_back(mid.block_interval(sm, d, k[d]));
        Box piece = intersect(blk, T);
        if (!piece.empty()) {
          if (s >= 0 && k == own)
            moves.push_back({ai, rt, rt, piece, 0, 0, false});
          else
            requests[k].push_back({rt, piece});
        }
        int d = mid.rank() - 1;
        while (d >= 0 && ++k[d] > range[d].second) k[d] = range[d].first, --d;
        if (d < 0) break;
      }
    }
    // Senders: the least loaded holder, or a broadcast tree for many receivers of one piece.
    for (auto& [k, reqs] : requests) {
      const std::vector<int>& h = holders.at(k);
      const std::int64_t bytes = reqs.front().piece.volume() * elem;
      // Compared through a plain reference: clang before 16 cannot capture a structured binding.
      const Box& first = reqs.front().piece;
      bool same = std::all_of(reqs.begin(), reqs.end(), [&](const Request& r) { return r.piece == first; });
      const std::int64_t R = static_cast<std::int64_t>(reqs.size()), H = static_cast<std::int64_t>(h.size());
      bool tree = false;
      if (opts.allow_tree && same && R > H) {
        const double per = opts.link.latency_s + static_cast<double>(bytes) / (opts.link.bandwidth_GBps * 1e9);
        const double direct = opts.link.latency_s + static_cast<double>((R + H - 1) / H) * (per - opts.link.latency_s);
        const int rounds = static_cast<int>(std::ceil(std::log2(static_cast<double>(R + H) / static_cast<double>(H))));
        tree = rounds * per < direct;
      }
      if (tree) {
        std::vector<int> have = h;  // holders first, then receivers as they are served
        std::vector<char> relay_ok(h.size(), 0);
        std::size_t next = 0;
        for (int round = 0; next < reqs.size(); ++round) {
          const std::size_t senders = have.size();
          for (std::size_t i = 0; i < senders && next < reqs.size(); ++i, ++next) {
            moves.push_back({ai, have[i], reqs[next].to, reqs[next].piece, 0, round, relay_ok[i] != 0});
            load[have[i]] += bytes;
            have.push_back(reqs[next].to);
            relay_ok.push_back(1);
          }
        }
      } else {
        for (std::size_t r = 0; r < reqs.size(); ++r) {
          const std::int64_t b = reqs[r].piece.volume() * elem;
          std::size_t best = r % h.size();  // rotate ties so equal loads spread
          for (std::size_t i = 0; i < h.size(); ++i) {
            std::size_t c = (r + i) % h.size();
            if (load[h[c]] < load[h[best]]) best = c;
          }
          moves.push_back({ai, h[best], reqs[r].to, reqs[r].piece, 0, 0, false});
          load[h[best]] += b;
        }
      }
    }
    p.pre.push_back(std::move(pre));
    p.mid.push_back(std::move(mid));
    for (int r = 0; r < W; ++r) st.lower_bound[r] += bound_here[r];
    std::int64_t bmax = 0;
    for (int r = 0; r < W; ++r) bmax = std::max(bmax, bound_here[r]);
    st.array_lower_bound_max.push_back(bmax);
  }

  // Buckets: walk the moves by round (a relay never precedes what feeds it) and close a bucket
  // when a rank's staging in it would pass half the cap (two buckets are in flight at once).
  std::stable_sort(moves.begin(), moves.end(), [](const XMove& x, const XMove& y) { return x.round < y.round; });
  if (opts.memory_cap > 0) {
    const std::int64_t half = opts.memory_cap / 2;
    std::int64_t max_elem = 1;
    for (const auto& a : p.arrays) max_elem = std::max<std::int64_t>(max_elem, static_cast<std::int64_t>(size_of(a.src.dtype)));
    if (half < max_elem)
      throw Error(fmt::format("--memory-cap {} B is too small: two buckets in flight need at least {} B", opts.memory_cap,
                              2 * max_elem));
    std::vector<XMove> cut;
    std::vector<std::int64_t> used(W, 0);
    int bucket = 0, round = 0;
    for (const XMove& m : moves) {
      if (m.from == m.to) {
        cut.push_back(m);  // local copies need no staging
        cut.back().bucket = bucket;
        continue;
      }
      const std::int64_t elem = static_cast<std::int64_t>(size_of(p.arrays[m.array].src.dtype));
      std::vector<Box> pieces;
      split_box(m.box, elem, half, pieces);
      for (const Box& b : pieces) {
        const std::int64_t bytes = b.volume() * elem;
        if (m.round != round || used[m.from] + bytes > half || used[m.to] + bytes > half) {
          if (std::any_of(used.begin(), used.end(), [](std::int64_t u) { return u > 0; })) ++bucket;
          std::fill(used.begin(), used.end(), 0);
          round = m.round;
        }
        used[m.from] += bytes;
        used[m.to] += bytes;
        XMove c = m;
        c.box = b;
        c.bucket = bucket;
        cut.push_back(std::move(c));
      }
    }
    moves = std::move(cut);
  }
  std::stable_sort(moves.begin(), moves.end(), [](const XMove& x, const XMove& y) {
    return std::tie(x.bucket, x.round, x.from, x.to, x.array) < std::tie(y.bucket, y.round, y.from, y.to, y.array);
  });
  p.moves = std::move(moves);
  for (const XMove& m : p.moves) {
    p.buckets = std::max(p.buckets, m.bucket + 1);
    p.rounds = std::max(p.rounds, m.round + 1);
  }

  // Figures per rank, phase by phase, exactly as the executor stages them (xplan_detail.hpp).
  st.array_bytes_recv_max.assign(p.arrays.size(), 0);
  std::vector<std::vector<std::int64_t>> arr_recv(p.arrays.size(), std::vector<std::int64_t>(W, 0));
  std::vector<std::int64_t> slot[2] = {std::vector<std::int64_t>(W, 0), std::vector<std::int64_t>(W, 0)};
  int phase_no = 0;
  for (const xdetail::Phase& ph : xdetail::phases_of(p)) {
    std::vector<std::int64_t> staging(W, 0);
    for (const xdetail::Message& msg : ph.messages) {
      st.bytes_recv[msg.to] += msg.bytes;
      st.bytes_sent[msg.from] += msg.bytes;
      st.calls[msg.from] += 1;
      st.calls[msg.to] += 1;
      staging[msg.from] += msg.send_staging;
      staging[msg.to] += msg.recv_staging;
      for (std::size_t i : msg.moves) arr_recv[p.moves[i].array][p.moves[i].to] += xdetail::move_bytes(p, p.moves[i]);
    }
    for (int r = 0; r < W; ++r) slot[phase_no % 2][r] = std::max(slot[phase_no % 2][r], staging[r]);
    ++phase_no;
  }
  for (int r = 0; r < W; ++r) {
    st.workspace[r] = slot[0][r] + slot[1][r];
    st.bytes_recv_max = std::max(st.bytes_recv_max, st.bytes_recv[r]);
    st.lower_bound_bytes = std::max(st.lower_bound_bytes, st.lower_bound[r]);
    st.workspace_bytes = std::max(st.workspace_bytes, st.workspace[r]);
    st.calls_max = std::max(st.calls_max, st.calls[r]);
  }
  for (std::size_t ai = 0; ai < p.arrays.size(); ++ai)
    st.array_bytes_recv_max[ai] = *std::max_element(arr_recv[ai].begin(), arr_recv[ai].end());
  // Cost: per phase, latency plus the busiest rank's bytes at the link's bandwidth.
  for (const xdetail::Phase& ph : xdetail::phases_of(p)) {
    std::vector<std::int64_t> busy(W, 0);
    for (const xdetail::Message& msg : ph.messages) busy[msg.from] += msg.bytes, busy[msg.to] += msg.bytes;
    st.est_time_s += opts.link.latency_s +
                     static_cast<double>(*std::max_element(busy.begin(), busy.end())) / (opts.link.bandwidth_GBps * 1e9);
  }
  if (p.rounds > 1) p.notes.push_back(fmt::format("broadcast tree: {} rounds for replicated targets", p.rounds));
  if (p.buckets > 1)
    p.notes.push_back(fmt::format("{} buckets under the memory cap of {} B", p.buckets, opts.memory_cap));
  if (st.pre_bytes_recv_max > 0)
    p.notes.push_back(fmt::format("pending reductions removed on the source mesh first ({} B received)",
                                  st.pre_bytes_recv_max));
  return p;
}

XPlan plan_cross(const Mesh& src_mesh, const Mesh& dst_mesh, const Type& src, const Type& dst, const XOptions& opts) {
  return plan_batch(src_mesh, dst_mesh, {XArray{"", src, dst}}, opts);
}

std::string xplan_fingerprint(const XPlan& p) {
  std::string s = fmt::format("{}>{}|{}|{}|{}", p.src_mesh, p.dst_mesh, p.memory_cap, p.direct_min_bytes, p.moves.size());
  for (const auto& a : p.arrays) s += fmt::format("|{}:{}>{}", a.name, a.src, a.dst);
  for (const auto& m : p.moves)
    s += fmt::format(";{},{},{},{},{},{},{}", m.array, m.from, m.to, m.box, m.bucket, m.round, m.relay ? 1 : 0);
  return s;
}

std::string to_string(const XPlan& p) {
  std::string s = fmt::format("{} array{} from mesh {} to mesh {} ({} world ranks): {} bucket{}, {} round{}\n",
                              p.arrays.size(), p.arrays.size() == 1 ? "" : "s", p.src_mesh, p.dst_mesh, p.world,
                              p.buckets, p.buckets == 1 ? "" : "s", p.rounds, p.rounds == 1 ? "" : "s");
  for (std::size_t i = 0; i < p.arrays.size(); ++i) {
    const XArray& a = p.arrays[i];
    s += fmt::format("  {}{} -> {}", a.name.empty() ? "" : a.name + ": ", a.src, a.dst);
    if (!p.pre[i].steps.empty()) s += fmt::format("  (first on the source mesh: {} steps to {})", p.pre[i].steps.size(), p.mid[i]);
    s += fmt::format("; received (max rank) {} B, lower bound {} B\n", p.stats.array_bytes_recv_max[i],
                     p.stats.array_lower_bound_max[i]);
  }
  for (const xdetail::Phase& ph : xdetail::phases_of(p)) {
    std::int64_t bytes = 0;
    for (const auto& m : ph.messages) bytes += m.bytes;
    s += fmt::format("  bucket {} round {}: {} messages, {} B\n", ph.bucket, ph.round, ph.messages.size(), bytes);
  }
  s += fmt::format("  received (max rank) {} B, lower bound {} B, workspace {} B, calls (max rank) {}\n",
                   p.stats.bytes_recv_max, p.stats.lower_bound_bytes, p.stats.workspace_bytes, p.stats.calls_max);
  for (const auto& n : p.notes) s += "  note: " + n + "\n";
  return s;
}

}  // namespace reshard
