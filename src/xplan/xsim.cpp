// The cross-mesh simulator (simulate_batch, xplan.hpp): every world rank in one process. Each
// phase first packs every message from the senders' current buffers, then delivers them all,
// so a relay that read data before it arrived would be caught. Then every target shard is
// held against its array's index fill.
#include <cstring>

#include "reshard/host_kernels.hpp"
#include "reshard/simulate.hpp"
#include "reshard/xplan.hpp"
#include "xplan_detail.hpp"

namespace reshard {

namespace {

using Bytes = std::vector<std::byte>;

void copy_between(const Bytes& src, const Box& src_block, Bytes& dst, const Box& dst_block, const Box& box,
                  std::size_t elem) {
  auto ss = extents(src_block), ds = extents(dst_block), ext = extents(box);
  auto so = offset_in(box, src_block), dof = offset_in(box, dst_block);
  copy_box(src.data(), ss, so, dst.data(), ds, dof, ext, elem);
}

}  // namespace

XSimResult simulate_batch(const XPlan& p) {
  XSimResult res;
  const Mesh sm = p.src_mesh.without_ranks(), dm = p.dst_mesh.without_ranks();
  const int W = p.world;
  const std::size_t A = p.arrays.size();
  res.bytes_recv.assign(W, 0);
  for (std::size_t a = 0; a < A; ++a) {
    if (p.pre[a].steps.empty()) continue;
    SimResult s = simulate(p.pre[a]);
    if (!s.ok) {
      res.error = fmt::format("array {}: the plan removing its reduction failed: {}", a, s.error);
      return res;
    }
  }
  // in[r][a]: rank r's shard of mid (index-filled: what a verified `pre` leaves); out[r][a].
  std::vector<std::vector<Bytes>> in(W, std::vector<Bytes>(A)), out(W, std::vector<Bytes>(A));
  for (int r = 0; r < W; ++r)
    for (std::size_t a = 0; a < A; ++a) {
      const std::size_t elem = size_of(p.arrays[a].src.dtype);
      if (int s = p.src_mesh.device_of(r); s >= 0) {
        in[r][a].resize(static_cast<std::size_t>(p.mid[a].local_elements(sm, s)) * elem);
        fill_index(in[r][a].data(), p.mid[a], sm, s);
      }
      if (int t = p.dst_mesh.device_of(r); t >= 0) {
        const Type& dst = p.arrays[a].dst;
        const std::int64_t n = dst.local_elements(dm, t);
        out[r][a].assign(static_cast<std::size_t>(n) * elem, std::byte{0xA5});  // not a value any fill leaves
        if (dst.op != ReduceOp::none) fill_identity(out[r][a].data(), n, dst.dtype, dst.op);  // make_partial
      }
    }
  for (const xdetail::Phase& ph : xdetail::phases_of(p)) {
    std::vector<std::int64_t> staging(W, 0);
    std::vector<Bytes> packets;
    for (const xdetail::Message& msg : ph.messages) {
      Bytes packet(static_cast<std::size_t>(msg.bytes));
      std::size_t at = 0;
      for (std::size_t i : msg.moves) {
        const XMove& m = p.moves[i];
        const std::size_t elem = size_of(p.arrays[m.array].src.dtype);
        const Bytes& from = m.relay ? out[m.from][m.array] : in[m.from][m.array];
        const Box blk = xdetail::send_block(p, m);
        auto ext = extents(m.box);
        std::vector<std::int64_t> zero(ext.size(), 0);
        copy_box(from.data(), extents(blk), offset_in(m.box, blk), packet.data() + at, ext, zero, ext, elem);
        at += static_cast<std::size_t>(m.box.volume()) * elem;
      }
      if (at != packet.size()) {
        res.error = fmt::format("a message from rank {} to rank {} packs {} B, the plan says {} B", msg.from, msg.to,
                                at, packet.size());
        return res;
      }
      staging[msg.from] += msg.send_staging;
      staging[msg.to] += msg.recv_staging;
      packets.push_back(std::move(packet));
    }
    for (std::size_t k = 0; k < ph.messages.size(); ++k) {
      const xdetail::Message& msg = ph.messages[k];
      res.bytes_recv[msg.to] += static_cast<std::int64_t>(packets[k].size());
      std::size_t at = 0;
      for (std::size_t i : msg.moves) {
        const XMove& m = p.moves[i];
        const std::size_t elem = size_of(p.arrays[m.array].src.dtype);
        if (p.dst_mesh.device_of(m.to) < 0) {
          res.error = fmt::format("a move of array {} goes to rank {}, which is not on the target mesh", m.array, m.to);
          return res;
        }
        const Box blk = xdetail::recv_block(p, m);
        if (!blk.contains(m.box)) {
          res.error = fmt::format("rank {} receives {} of array {}, outside its block {}", m.to, m.box, m.array, blk);
          return res;
        }
        auto ext = extents(m.box);
        std::vector<std::int64_t> zero(ext.size(), 0);
        copy_box(packets[k].data() + at, ext, zero, out[m.to][m.array].data(), extents(blk), offset_in(m.box, blk), ext,
                 elem);
        at += static_cast<std::size_t>(m.box.volume()) * elem;
      }
    }
    for (std::size_t i : ph.locals) {
      const XMove& m = p.moves[i];
      copy_between(in[m.from][m.array], xdetail::send_block(p, m), out[m.to][m.array], xdetail::recv_block(p, m), m.box,
                   size_of(p.arrays[m.array].src.dtype));
    }
    for (int r = 0; r < W; ++r) res.workspace_max = std::max(res.workspace_max, staging[r]);
  }
  for (std::size_t a = 0; a < A; ++a) {
    const Type& dst = p.arrays[a].dst;
    const double tol = index_fill_tolerance(p.mid[a], sm);
    for (int t = 0; t < dm.num_devices(); ++t) {
      const Bytes& o = out[p.dst_mesh.rank_of(t)][a];
      bool lead = true;
      for (const auto& ax : dst.reduce_axes) lead = lead && dm.coord(t, dm.axis_index(ax)) == 0;
      std::int64_t bad = 0;
      if (lead) {
        bad = check_index(o.data(), dst, dm, t, tol, &p.mid[a]);
      } else {
        Bytes id(o.size());
        fill_identity(id.data(), dst.local_elements(dm, t), dst.dtype, dst.op);
        bad = id == o ? 0 : 1;
      }
      if (bad) {
        res.error = fmt::format("array {} ({} -> {}): target device {} (rank {}): {} elements differ", a,
                                p.arrays[a].src, dst, t, p.dst_mesh.rank_of(t), bad);
        return res;
      }
    }
  }
  res.ok = true;
  return res;
}

}  // namespace reshard
