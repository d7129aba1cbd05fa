#include "reshard/route.hpp"

#include <algorithm>

#include "indexed.hpp"
#include "reshard/error.hpp"

namespace reshard {

using detail::IndexedType;
using detail::coords_of;
using detail::device_of;
using detail::next_coords;

std::vector<int> group_of(const Mesh& mesh, const std::vector<std::string>& axes, int device) {
  std::vector<int> A = detail::axis_indices(mesh, axes);
  std::vector<int> c = coords_of(mesh, device);
  for (int a : A) c[a] = 0;
  std::vector<int> g;
  do g.push_back(device_of(mesh, c));
  while (next_coords(c, A, mesh));
  return g;
}

namespace {

std::uint64_t mask_of(const std::vector<int>& axes) {
  std::uint64_t m = 0;
  for (int a : axes) m |= 1ull << a;
  return m;
}

std::vector<int> axes_in(const std::vector<int>& A, std::uint64_t mask) {
  std::vector<int> r;
  for (int a : A)
    if (mask >> a & 1) r.push_back(a);
  return r;
}

// Position of a device in its group: mixed radix of its coordinates over A.
std::int64_t group_pos(const std::vector<int>& c, const std::vector<int>& A, const Mesh& m) {
  std::int64_t p = 0;
  for (int a : A) p = p * m.axes()[a].size + c[a];
  return p;
}

// How a non-reducing step picks, for a receiver, which replica of an in-block sends it.
// A_used: group axes that index in-blocks; X: group axes free in the source but used by the
// target (replicas to spread over); Y: group axes used by the source but free in the target
// (receivers that need the same data). Receivers that differ on Y take from holders that
// differ on X, so one holder does not serve them all (docs/design.md 9, substitute an axis).
struct HolderRule {
  std::vector<int> A, A_used, X, Y;

  HolderRule(const Mesh& m, const Step& s, const IndexedType& in, const IndexedType& out) {
    A = detail::axis_indices(m, s.axes);
    A_used = axes_in(A, in.dim_mask);
    std::uint64_t f_in = mask_of(A) & ~in.dim_mask, f_out = mask_of(A) & ~out.dim_mask;
    X = axes_in(A, f_in & ~f_out);
    Y = axes_in(A, f_out & ~f_in);
  }
  bool same_block(const std::vector<int>& a, const std::vector<int>& b) const {
    for (int x : A_used)
      if (a[x] != b[x]) return false;
    return true;
  }
  // Holder of the in-block whose A_used coordinates are those of `blk`, for receiver `rc`.
  int holder(const std::vector<int>& rc, const std::vector<int>& blk, const Mesh& m) const {
    if (same_block(rc, blk)) return device_of(m, rc);
    std::vector<int> hc = rc;
    for (int a : A_used) hc[a] = blk[a];
    std::int64_t L = group_pos(rc, Y, m);
    for (int i = static_cast<int>(X.size()) - 1; i >= 0; --i) {
      int n = m.axes()[X[i]].size;
      hc[X[i]] = static_cast<int>(L % n);
      L /= n;
    }
    return device_of(m, hc);
  }
};

}  // namespace

DeviceRoute route(const Mesh& mesh, const Step& step, int device) {
  DeviceRoute r;
  IndexedType in(step.in, mesh), out(step.out, mesh);
  std::vector<int> dc = coords_of(mesh, device);
  if (!step.communicates()) {
    Box b = out.block(dc, mesh);
    if (b.volume() > 0) {
      r.sends.push_back({device, b});
      r.recvs.push_back({device, b});
    }
    return r;
  }
  std::vector<int> A = detail::axis_indices(mesh, step.axes);
  Box in_box = in.block(dc, mesh), out_box = out.block(dc, mesh);
  std::vector<int> c = dc;
  for (int a : A) c[a] = 0;

  if (step.reduces()) {
    // Every member contributes its in-block cut to the receiver's out-block.
    do {
      int peer = device_of(mesh, c);
      Box to_peer = intersect(in_box, out.block(c, mesh));
      Box from_peer = intersect(in.block(c, mesh), out_box);
      if (to_peer.volume() > 0) r.sends.push_back({peer, to_peer});
      if (from_peer.volume() > 0) r.recvs.push_back({peer, from_peer});
    } while (next_coords(c, A, mesh));
    return r;
  }

  HolderRule rule(mesh, step, in, out);
  // Sends: to every receiver of the group whose chosen holder of my block is me.
  do {
    Box b = intersect(in_box, out.block(c, mesh));
    if (b.volume() > 0 && rule.holder(c, dc, mesh) == device) r.sends.push_back({device_of(mesh, c), b});
  } while (next_coords(c, A, mesh));
  // Receives: every distinct in-block of the group that meets my out-block.
  std::vector<int> blk = dc;
  for (int a : rule.A_used) blk[a] = 0;
  std::vector<std::pair<std::int64_t, Transfer>> recvs;
  do {
    Box b = intersect(in.block(blk, mesh), out_box);
    if (b.volume() > 0) {
      int h = rule.holder(dc, blk, mesh);
      recvs.push_back({group_pos(coords_of(mesh, h), A, mesh), {h, b}});
    }
  } while (next_coords(blk, rule.A_used, mesh));
  std::sort(recvs.begin(), recvs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [pos, t] : recvs) r.recvs.push_back(std::move(t));
  return r;
}

namespace {

// Size-1 axes change no block and no group; validity ignores them.
std::uint64_t nontrivial(std::uint64_t mask, const Mesh& m) {
  std::uint64_t r = 0;
  for (int a = 0; a < m.num_axes(); ++a)
    if ((mask >> a & 1) && m.axes()[a].size > 1) r |= 1ull << a;
  return r;
}

// Along dim d: is every receiver's out-interval covered by the in-intervals it can reach,
// i.e. those of the devices that differ from it only on the group axes `group`?
bool dim_covered(const Mesh& m, const IndexedType& in, const IndexedType& out, int d,
                 std::uint64_t group, std::string* why) {
  const auto& ia = in.dims[d].axes;
  std::vector<int> free = axes_in(ia, group);
  if (free.size() == ia.size()) return true;  // every in-block of the dim is reachable
  // Receivers differ on the out-axes and on the in-axes they cannot vary within the group.
  std::vector<int> all = out.dims[d].axes;
  for (int a : ia)
    if (!(group >> a & 1) && std::find(all.begin(), all.end(), a) == all.end()) all.push_back(a);
  // The free digits form a suffix of the in-axes: the reachable blocks are consecutive.
  bool suffix = std::equal(free.begin(), free.end(), ia.end() - free.size());
  std::vector<int> rc(m.num_axes(), 0);
  std::vector<Interval> parts;
  do {
    Interval want = out.interval(d, rc, m);
    if (want.extent() == 0) continue;
    std::vector<int> c = rc;
    for (int a : free) c[a] = 0;
    bool ok;
    if (suffix) {
      Interval first = in.interval(d, c, m);
      for (int a : free) c[a] = m.axes()[a].size - 1;
      Interval last = in.interval(d, c, m);
      ok = first.lo <= want.lo && want.hi <= std::max(first.hi, last.hi);
    } else {
      parts.clear();
      do parts.push_back(in.interval(d, c, m));
      while (next_coords(c, free, m));
      std::sort(parts.begin(), parts.end(), [](auto& x, auto& y) { return x.lo < y.lo; });
      std::int64_t reach = want.lo;
      for (const Interval& p : parts)
        if (p.extent() > 0 && p.lo <= reach) reach = std::max(reach, p.hi);
      ok = reach >= want.hi;
    }
    if (!ok) {
      if (why)
        *why = fmt::format("dim {}: the block [{}, {}) is not assembled from the blocks the group "
                           "holds", d, want.lo, want.hi);
      return false;
    }
  } while (next_coords(rc, all, m));
  return true;
}

}  // namespace

bool step_is_valid(const Mesh& mesh, const Step& step, std::string* why) {
  auto fail = [&](std::string msg) {
    if (why) *why = std::move(msg);
    return false;
  };
  try {
    step.in.validate(mesh);
    step.out.validate(mesh);
  } catch (const Error& e) {
    return fail(e.what());
  }
  if (step.in.dtype != step.out.dtype) return fail("dtype changes");
  if (step.in.global_shape() != step.out.global_shape()) return fail("global shape changes");
  IndexedType in(step.in, mesh), out(step.out, mesh);
  std::uint64_t A = nontrivial(mask_of(detail::axis_indices(mesh, step.axes)), mesh);
  std::uint64_t rin = nontrivial(in.reduce_mask, mesh), rout = nontrivial(out.reduce_mask, mesh);
  std::uint64_t din = nontrivial(in.dim_mask, mesh), dout = nontrivial(out.dim_mask, mesh);
  if (rin && rout && step.in.op != step.out.op) return fail("the reduction op changes");
  std::uint64_t group = 0;
  switch (step.op) {
    case Op::reduce_scatter:
    case Op::all_reduce:
      if ((A & rin) != A || A == 0) return fail("reduces axes that are not pending");
      if (rout != (rin & ~A)) return fail("the pending axes after the step are wrong");
      if (A & dout & ~din) {
        if (step.op == Op::all_reduce) return fail("all_reduce cannot split dims");
      } else if (step.op == Op::reduce_scatter && (dout & ~din) == 0) {
        return fail("reduce_scatter splits no dim");
      }
      break;
    case Op::local:
      if (step.local_kind == LocalKind::make_partial) {
        if ((rin & ~rout) != 0 || (rout & ~rin & (din | dout)) != 0)
          return fail("make_partial may only add pending axes that are replicated");
        for (int d = 0; d < step.in.rank(); ++d)
          if (in.dims[d].k != out.dims[d].k) return fail("make_partial changes a dim");
        break;
      }
      [[fallthrough]];
    case Op::slice:
      if (rin != rout) return fail("a local step cannot change pending reductions");
      break;
    case Op::permute:
      for (int d = 0; d < step.in.rank(); ++d)
        if (in.dims[d].k != out.dims[d].k) return fail("a permute keeps the number of blocks of every dim");
      [[fallthrough]];
    default:  // moves data between devices of the group; never across pending axes
      if (A & rin) return fail("data cannot move across axes with a pending reduction");
      if (rin != rout) return fail("a data movement step cannot change pending reductions");
      group = A;
      break;
  }
  for (int d = 0; d < step.in.rank(); ++d)
    if (!dim_covered(mesh, in, out, d, group, why)) return false;
  return true;
}

}  // namespace reshard

namespace reshard {

std::int64_t linear_offset(const Box& box, const Box& block) {
  std::int64_t off = 0;
  for (std::size_t d = 0; d < box.dims.size(); ++d)
    off = off * block.dims[d].extent() + (box.dims[d].lo - block.dims[d].lo);
  return off;
}

bool contiguous_in(const Box& box, const Box& block) {
  if (box.volume() == 0) return true;
  std::size_t k = 0;
  while (k < box.dims.size() && box.dims[k].extent() == 1) ++k;  // leading unit extents
  for (std::size_t d = k + 1; d < box.dims.size(); ++d)
    if (box.dims[d] != block.dims[d]) return false;  // trailing dims must be whole
  return true;
}

Staging staging_of(const Mesh& mesh, const Step& step, const DeviceRoute& r, int device) {
  Staging s;
  if (!step.communicates() || step.op == Op::all_reduce) return s;
  std::int64_t elem = static_cast<std::int64_t>(size_of(step.in.dtype));
  Box in_block = step.in.block(mesh, device), out_block = step.out.block(mesh, device);
  auto offset_of = [](const Box& box, const Box& block) {  // linear offset of the box's corner
    std::int64_t off = 0;
    for (std::size_t d = 0; d < box.dims.size(); ++d)
      off = off * block.dims[d].extent() + (box.dims[d].lo - block.dims[d].lo);
    return off;
  };
  if (step.op == Op::reduce_scatter) {
    std::int64_t expect = 0, total = 0;
    bool in_order = true;
    for (const Transfer& t : r.sends) {
      std::int64_t v = t.box.volume();
      if (!contiguous_in(t.box, in_block) || (v > 0 && offset_of(t.box, in_block) != expect)) in_order = false;
      expect += v;
      total += v;
    }
    if (!in_order) s.send_bytes = total * elem;
    return s;
  }
  std::int64_t send = 0, recv = 0;
  bool send_contig = true, recv_contig = true;
  for (const Transfer& t : r.sends)
    if (t.peer != device) {
      send += t.box.volume();
      send_contig = send_contig && contiguous_in(t.box, in_block);
    }
  for (const Transfer& t : r.recvs)
    if (t.peer != device) {
      recv += t.box.volume();
      recv_contig = recv_contig && contiguous_in(t.box, out_block);
    }
  if (!send_contig) s.send_bytes = send * elem;
  if (!recv_contig) s.recv_bytes = recv * elem;
  return s;
}

}  // namespace reshard
