// Batched and cross-mesh plans against their baselines (xbench.hpp).
#include "xbench.hpp"

#include <climits>
#include <cstring>

#include <fmt/format.h>

#include "mpi_session.hpp"
#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"

namespace reshard::bench {

namespace {

int to_int(std::int64_t n, const char* what) {
  if (n < 0 || n > INT_MAX) throw Error(fmt::format("{}: {} B is too large for one MPI call", what, n));
  return static_cast<int>(n);
}

std::int64_t bytes_of(const std::vector<Bytes>& v) {
  std::int64_t n = 0;
  for (const Bytes& b : v) n += static_cast<std::int64_t>(b.size());
  return n;
}

// Target shards of every array compared with the index fill (summed over the world).
std::int64_t target_mismatches(XContext& x, const XPlan& p, const XBuffers& b) {
  std::int64_t bad = 0;
  for (std::size_t a = 0; a < p.arrays.size(); ++a)
    bad += x.count_index_mismatches(p.arrays[a], b.out[a].data(), b.out[a].size());
  return bad;
}

// The same, by the ordinary Context of a one-mesh batch: a pending reduction in a target is
// reduced over its group first, as any valid partial state is (a pending max may be held whole
// by every member, where a cross-mesh plan leaves the identity on all but the first).
std::int64_t reduced_target_mismatches(Context& ctx, const XPlan& p, const XBuffers& b) {
  std::int64_t bad = 0;
  if (ctx.participates())
    for (std::size_t a = 0; a < p.arrays.size(); ++a)
      bad += ctx.count_index_mismatches(p.arrays[a].dst, b.out[a].data(), b.out[a].size(), &p.arrays[a].src);
  return reduce_all(MPI_COMM_WORLD, bad, MPI_MAX);  // each participant has the total
}

// The check of a contender that writes the target shards: one more call into poisoned outputs,
// then the targets (`count`) and the sources against a fresh fill (unchanged).
void check_targets(XContext& x, const XPlan& p, XBuffers& b, const std::function<void()>& once, Row& row,
                   const std::function<std::int64_t()>& count = {}) {
  for (Bytes& o : b.out) std::fill(o.begin(), o.end(), std::byte{0xff});
  once();
  row.mismatches = count ? count() : target_mismatches(x, p, b);
  bool kept = true;
  for (std::size_t a = 0; a < p.arrays.size(); ++a) {
    Bytes fresh(b.in[a].size());
    if (x.src_device() >= 0) x.src_context().fill_index(p.arrays[a].src, fresh.data());
    kept = kept && fresh == b.in[a];
  }
  const bool input_kept = reduce_all(MPI_COMM_WORLD, kept ? 0 : 1, MPI_SUM) == 0;
  if (!input_kept) row.notes.push_back("the call wrote into its input buffers");
  row.verified = row.mismatches == 0 && input_kept;
}

Contender batched(XContext& x, const XPlan& p, XBuffers& b) {
  Contender c;
  c.row.strategy = "reshard";
  c.row.check = "target";
  c.row.notes = p.notes;
  c.row.steps = {fmt::format("{} bucket(s) x {} round(s) of point-to-point messages", p.buckets, p.rounds)};
  c.once = [&x, &p, &b] { x.reshard(p, b.cin, b.mout); };
  c.finish = [&x, &p, &b, once = c.once](Row& row) {
    check_targets(x, p, b, once, row);
    row.bytes_recv_max = p.stats.bytes_recv_max;
    row.workspace_bytes = reduce_all(MPI_COMM_WORLD, x.workspace_peak_bytes(), MPI_MAX);
    row.peak_bytes = reduce_all(MPI_COMM_WORLD, bytes_of(b.in) + bytes_of(b.out) + x.workspace_peak_bytes(), MPI_MAX);
  };
  return c;
}

// One call per array, on an XContext of its own (its workspace is its own figure).
Contender single_calls(XContext& x, const XPlan& p, XBuffers& b) {
  struct State {
    std::unique_ptr<XContext> xs;
    std::vector<std::shared_ptr<const Plan>> one_mesh;
    std::vector<std::shared_ptr<const XPlan>> cross;
    std::int64_t bytes_recv_max = 0;
  };
  auto s = std::make_shared<State>();
  XOptions o = x.options();
  o.memory_cap = p.memory_cap;
  o.direct_min_bytes = p.direct_min_bytes;
  // The batched call's options, its agreement check included (ExecOptions::check_every_call).
  s->xs = std::make_unique<XContext>(p.src_mesh, p.dst_mesh, MPI_COMM_WORLD, o, x.exec_options());  // collective
  const bool same = !p.cross_mesh();
  for (const XArray& a : p.arrays) {
    if (same) {
      s->one_mesh.push_back(s->xs->src_context().plan(a.src, a.dst));
      s->bytes_recv_max += s->one_mesh.back()->stats.bytes_recv_max;
    } else {
      s->cross.push_back(s->xs->plan({a}));
      s->bytes_recv_max += s->cross.back()->stats.bytes_recv_max;
    }
  }
  Contender c;
  c.row.strategy = "single_calls";
  c.row.check = "target";
  c.row.steps = {fmt::format("{} calls, one per array ({})", p.arrays.size(),
                             same ? "ordinary plans on the mesh" : "single-array cross-mesh plans")};
  c.once = [s, &b, same] {
    for (std::size_t a = 0; a < b.in.size(); ++a) {
      if (same)
        s->xs->src_context().reshard(*s->one_mesh[a], b.in[a].data(), b.in[a].size(), b.out[a].data(), b.out[a].size());
      else
        s->xs->reshard(*s->cross[a], {&b.cin[a], 1}, {&b.mout[a], 1});
    }
  };
  c.finish = [s, &x, &p, &b, same, once = c.once](Row& row) {
    if (same) check_targets(x, p, b, once, row, [&] { return reduced_target_mismatches(s->xs->src_context(), p, b); });
    else check_targets(x, p, b, once, row);
    row.bytes_recv_max = s->bytes_recv_max;  // sum over arrays of each plan's max: an upper bound
    std::int64_t ws = 0;
    if (same && s->xs->src_context().participates())
      for (const auto& pl : s->one_mesh) ws = std::max(ws, s->xs->src_context().executor()->workspace_bytes(*pl));
    if (!same) ws = s->xs->workspace_peak_bytes();
    row.workspace_bytes = reduce_all(MPI_COMM_WORLD, ws, MPI_MAX);
    row.peak_bytes = reduce_all(MPI_COMM_WORLD, bytes_of(b.in) + bytes_of(b.out) + ws, MPI_MAX);
  };
  return c;
}

// The byte a sender writes at offset k of its message to `to` (raw's transport check).
std::byte pattern(int from, int to, std::int64_t k) {
  return static_cast<std::byte>((from * 131 + to * 31 + k) & 0xff);
}

Contender raw_alltoallv(const XPlan& p, int rank, int size) {
  struct State {
    std::vector<int> sc, rc, sd, rd;
    Bytes s, r;
  };
  auto st = std::make_shared<State>();
  st->sc.assign(size, 0), st->rc.assign(size, 0), st->sd.assign(size, 0), st->rd.assign(size, 0);
  std::vector<std::int64_t> sc(size, 0), rc(size, 0);
  for (const XMove& m : p.moves) {
    if (m.from == m.to) continue;
    const std::int64_t b = m.box.volume() * static_cast<std::int64_t>(size_of(p.arrays[m.array].src.dtype));
    if (m.from == rank) sc[m.to] += b;
    if (m.to == rank) rc[m.from] += b;
  }
  std::int64_t stotal = 0, rtotal = 0;
  for (int i = 0; i < size; ++i) {
    st->sc[i] = to_int(sc[i], "MPI_Alltoallv"), st->rc[i] = to_int(rc[i], "MPI_Alltoallv");
    st->sd[i] = to_int(stotal, "MPI_Alltoallv"), st->rd[i] = to_int(rtotal, "MPI_Alltoallv");
    stotal += sc[i], rtotal += rc[i];
  }
  st->s.resize(static_cast<std::size_t>(stotal) + 1);
  st->r.resize(static_cast<std::size_t>(rtotal) + 1);
  for (int to = 0; to < size; ++to)
    for (std::int64_t k = 0; k < sc[to]; ++k) st->s[static_cast<std::size_t>(st->sd[to] + k)] = pattern(rank, to, k);
  Contender c;
  c.row.strategy = "raw_alltoallv";
  c.row.check = "transport";
  c.row.steps = {"MPI_Alltoallv"};
  c.once = [st] {
    auto armed = watched(MPI_COMM_WORLD, "MPI_Alltoallv");
    mpi_check(MPI_Alltoallv(st->s.data(), st->sc.data(), st->sd.data(), MPI_BYTE, st->r.data(), st->rc.data(),
                            st->rd.data(), MPI_BYTE, MPI_COMM_WORLD),
              "MPI_Alltoallv");
  };
  c.finish = [st, rank, size, rtotal, stotal, once = c.once](Row& row) {
    std::fill(st->r.begin(), st->r.end(), std::byte{0});
    once();
    std::int64_t bad = 0;
    for (int from = 0; from < size; ++from)
      for (std::int64_t k = 0; k < st->rc[from]; ++k)
        bad += st->r[static_cast<std::size_t>(st->rd[from] + k)] != pattern(from, rank, k);
    row.mismatches = reduce_all(MPI_COMM_WORLD, bad, MPI_SUM);
    row.verified = row.mismatches == 0;
    row.bytes_recv_max = reduce_all(MPI_COMM_WORLD, rtotal, MPI_MAX);
    row.peak_bytes = reduce_all(MPI_COMM_WORLD, stotal + rtotal, MPI_MAX);
  };
  return c;
}

// Gathers every source shard on the source mesh's first device, then scatters every target
// shard from it. The root's target shards are made before timing (as the global arrays
// reassembled): lead members of a pending reduction get the logical values, the others the
// identity, which is what the other contenders leave.
Contender gather_scatter(XContext& x, const XPlan& p, XBuffers& b, int size) {
  struct State {
    std::vector<std::vector<int>> gc, gd, sc, sd;
    Bytes gbuf;
    std::vector<Bytes> sbuf;  // root: per array, every rank's target shard
    int root = 0;
    std::int64_t recv_max = 0;
  };
  auto st = std::make_shared<State>();
  st->root = p.src_mesh.rank_of(0);
  const bool root = x.rank() == st->root;
  const Mesh sm = p.src_mesh.without_ranks(), dm = p.dst_mesh.without_ranks();
  std::int64_t gmax = 0, root_recv = 0, scatter_recv = 0;
  for (std::size_t a = 0; a < p.arrays.size(); ++a) {
    const XArray& arr = p.arrays[a];
    std::vector<int> gc(size, 0), gd(size, 0), sc(size, 0), sd(size, 0);
    std::int64_t gt = 0, stt = 0;
    for (int r = 0; r < size; ++r) {
      const int s = p.src_mesh.device_of(r), t = p.dst_mesh.device_of(r);
      const std::int64_t gb = s >= 0 ? arr.src.local_bytes(sm, s) : 0, sb = t >= 0 ? arr.dst.local_bytes(dm, t) : 0;
      gc[r] = to_int(gb, "MPI_Gatherv"), sc[r] = to_int(sb, "MPI_Scatterv");
      gd[r] = to_int(gt, "MPI_Gatherv"), sd[r] = to_int(stt, "MPI_Scatterv");
      gt += gb, stt += sb;
      if (r != st->root) root_recv += gb;
      if (r == x.rank() && r != st->root) scatter_recv += sb;
    }
    gmax = std::max(gmax, gt);
    if (root) {
      Bytes all(static_cast<std::size_t>(stt));
      for (int r = 0; r < size; ++r) {
        const int t = p.dst_mesh.device_of(r);
        if (t < 0 || sc[r] == 0) continue;
        std::byte* shard = all.data() + sd[r];
        bool lead = true;
        for (const auto& ax : arr.dst.reduce_axes) lead = lead && dm.coord(t, dm.axis_index(ax)) == 0;
        const std::int64_t n = arr.dst.local_elements(dm, t);
        if (!lead) {
          fill_identity(shard, n, arr.dst.dtype, arr.dst.op);
          continue;
        }
        Type logical = arr.dst;  // the values a reshard leaves on a lead member: the index fill
        logical.op = ReduceOp::none;
        logical.reduce_axes.clear();
        fill_index(shard, logical, dm, t);
      }
      st->sbuf.push_back(std::move(all));
    }
    st->gc.push_back(gc), st->gd.push_back(gd), st->sc.push_back(sc), st->sd.push_back(sd);
  }
  st->gbuf.resize(root ? static_cast<std::size_t>(gmax) + 1 : 1);
  st->recv_max = reduce_all(MPI_COMM_WORLD, root ? root_recv : scatter_recv, MPI_MAX);
  Contender c;
  c.row.strategy = "gather_scatter";
  c.row.check = "target";
  c.row.steps = {fmt::format("MPI_Gatherv x {} to rank {}", p.arrays.size(), st->root),
                 fmt::format("MPI_Scatterv x {} from rank {}", p.arrays.size(), st->root)};
  const int me = x.rank();
  c.once = [st, &b, me, root] {
    for (std::size_t a = 0; a < b.in.size(); ++a) {
      auto armed = watched(MPI_COMM_WORLD, "MPI_Gatherv");
      mpi_check(MPI_Gatherv(b.in[a].data(), st->gc[a][me], MPI_BYTE, st->gbuf.data(), st->gc[a].data(),
                            st->gd[a].data(), MPI_BYTE, st->root, MPI_COMM_WORLD),
                "MPI_Gatherv");
    }
    for (std::size_t a = 0; a < b.out.size(); ++a) {
      auto armed = watched(MPI_COMM_WORLD, "MPI_Scatterv");
      mpi_check(MPI_Scatterv(root ? st->sbuf[a].data() : nullptr, st->sc[a].data(), st->sd[a].data(), MPI_BYTE,
                             b.out[a].data(), st->sc[a][me], MPI_BYTE, st->root, MPI_COMM_WORLD),
                "MPI_Scatterv");
    }
  };
  c.finish = [st, &x, &p, &b, once = c.once](Row& row) {
    check_targets(x, p, b, once, row);
    row.bytes_recv_max = st->recv_max;
    row.peak_bytes = reduce_all(
        MPI_COMM_WORLD,
        bytes_of(b.in) + bytes_of(b.out) + static_cast<std::int64_t>(st->gbuf.size()) + bytes_of(st->sbuf), MPI_MAX);
  };
  return c;
}

}  // namespace

XBuffers x_buffers(XContext& x, const XPlan& p, bool fill) {
  XBuffers b;
  for (const XArray& a : p.arrays) {
    b.in.emplace_back(static_cast<std::size_t>(x.src_context().local_bytes(a.src)));
    if (fill && x.src_device() >= 0) x.src_context().fill_index(a.src, b.in.back().data());
    b.out.emplace_back(static_cast<std::size_t>(x.dst_context().local_bytes(a.dst)));
  }
  for (std::size_t i = 0; i < p.arrays.size(); ++i) {
    b.cin.push_back({b.in[i].data(), b.in[i].size()});
    b.mout.push_back({b.out[i].data(), b.out[i].size()});
  }
  return b;
}

Contender x_contender(const std::string& strategy, XContext& x, const XPlan& plan, XBuffers& b, const Timing& timing) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Contender c;
  if (strategy == "reshard") c = batched(x, plan, b);
  else if (strategy == "single_calls") c = single_calls(x, plan, b);
  else if (strategy == "raw_alltoallv") c = raw_alltoallv(plan, x.rank(), size);
  else if (strategy == "gather_scatter") c = gather_scatter(x, plan, b, size);
  else throw Error(fmt::format("unknown strategy '{}' for a batch (known: {})", strategy, fmt::join(kXStrategies, ", ")));
  c.refresh = [] {};  // the buffers stay where they are: the plans hold their addresses
  warm_up(MPI_COMM_WORLD, timing, c);
  return c;
}

std::vector<Row> x_compare(XContext& x, const XPlan& plan, XBuffers& b, const std::vector<std::string>& strategies,
                           const Timing& timing) {
  std::vector<Contender> cs;
  for (const std::string& s : strategies) cs.push_back(x_contender(s, x, plan, b, timing));
  time_rounds(MPI_COMM_WORLD, timing.iters, cs);
  std::vector<Row> rows;
  for (Contender& c : cs) {
    c.row.time = stats_of(c.row.times);
    c.finish(c.row);
    rows.push_back(std::move(c.row));
  }
  return rows;
}

}  // namespace reshard::bench
