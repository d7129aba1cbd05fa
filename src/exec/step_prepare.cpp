// prepare_step: from a step's route (route.hpp) to buffer offsets and one collective call.
// A collective needs every member of the group to call it with matching counts, so whether a
// step fits Allgatherv or Reduce_scatter is decided from every member's route, never from this
// device's alone; the group communicator is asked for by op only, so that all devices create
// the same communicators in the same order.
#include <algorithm>

#include "reshard/route.hpp"
#include "reshard/workspace.hpp"
#include "step_exec.hpp"

namespace reshard::exec {

std::string_view name_of(Mode m) {
  switch (m) {
    case Mode::local: return "local";
    case Mode::allgatherv: return "allgatherv";
    case Mode::alltoallv: return "alltoallv";
    case Mode::reduce_scatter: return "reduce_scatter";
    case Mode::allreduce: return "allreduce";
    case Mode::p2p: return "p2p";
    case Mode::p2p_reduce: return "p2p_reduce";
  }
  return "?";
}

namespace {

// What every step needs: this device's blocks, its route, and its peers' group ranks.
struct Ctx {
  const Mesh& mesh;
  const Step& step;
  int me;
  Box in_block, out_block;
  DeviceRoute route;
  std::vector<int> members;  // the group in group order (empty: peers are device numbers)

  int rank_of(int device) const {
    if (members.empty()) return device;
    return static_cast<int>(std::find(members.begin(), members.end(), device) - members.begin());
  }
  Xfer send(const Transfer& t) const {
    return {rank_of(t.peer), extents(t.box), offset_in(t.box, in_block), {}, t.box.volume(), 0};
  }
  Xfer recv(const Transfer& t) const {
    return {rank_of(t.peer), extents(t.box), {}, offset_in(t.box, out_block), t.box.volume(), 0};
  }
  Xfer self(const Box& b) const {
    return {-1, extents(b), offset_in(b, in_block), offset_in(b, out_block), b.volume(), 0};
  }
};

// Places the transfers of one side (other peers only) in the caller's buffer when every box
// is contiguous in `block` (and `force` is off), else packed in order in staging. Sets
// `staged` and grows `stage` (elements); `make` builds the Xfer of a transfer.
template <class Make>
void place_side(const Ctx& c, const std::vector<Transfer>& transfers, const Box& block, bool force,
                bool& staged, std::int64_t& stage, std::vector<Xfer>& out, Make make) {
  staged = force;
  for (const Transfer& t : transfers)
    if (t.peer != c.me && !contiguous_in(t.box, block)) staged = true;
  for (const Transfer& t : transfers) {
    if (t.peer == c.me) continue;
    Xfer x = make(t);
    x.at = staged ? stage : linear_offset(t.box, block);
    if (staged) stage += x.count;
    out.push_back(std::move(x));
  }
}

void place_sends(const Ctx& c, StepExec& s) {
  place_side(c, c.route.sends, c.in_block, false, s.stage_sends, s.send_stage, s.sends,
             [&](const Transfer& t) { return c.send(t); });
}

// `force` stages the receives even where they are contiguous.
void place_recvs(const Ctx& c, StepExec& s, bool force) {
  place_side(c, c.route.recvs, c.out_block, force, s.stage_recvs, s.recv_stage, s.recvs,
             [&](const Transfer& t) { return c.recv(t); });
}

void place_self(const Ctx& c, StepExec& s) {
  for (const Transfer& t : c.route.sends)
    if (t.peer == c.me) s.self.push_back(c.self(t.box));
}

// Whether any member of the group says yes (a max all-reduce over the step's group).
bool any_member(Group& g, bool yes) {
  std::int32_t v = yes ? 1 : 0;
  g.allreduce(&v, &v, 1, DType::i32, ReduceOp::max);
  return v != 0;
}

// Where the transport can move boxes in place (MPI derived datatypes), strided messages need
// no staging: every message becomes a box of the in- or out-block. Point-to-point messages
// match whatever each side's layout, but the members of an all-to-all must all make the same
// call: there, every member moves boxes when any member would stage (whether a box is
// contiguous can differ between members on uneven splits) and every member could prepare
// them. Collective over the group for all-to-all steps.
void try_in_place(StepExec& s) {
  if (!s.group->moves_boxes()) return;
  const bool all_to_all = s.mode == Mode::alltoallv;
  const bool stages = s.stage_sends || s.stage_recvs;
  if (all_to_all ? !any_member(*s.group, stages) : !stages) return;
  std::vector<BoxMsg> sends, recvs;
  for (const Xfer& x : s.sends) sends.push_back({x.peer, s.in_shape, x.in_off, x.extent});
  for (const Xfer& x : s.recvs) recvs.push_back({x.peer, s.out_shape, x.out_off, x.extent});
  s.boxes = s.group->prepare_boxes(sends, recvs, s.dtype);
  if (all_to_all && any_member(*s.group, !s.boxes)) s.boxes.reset();
  if (!s.boxes) return;
  s.stage_sends = s.stage_recvs = false;
  s.send_stage = s.recv_stage = 0;
}

void fill_segments(StepExec& s, int group_size) {
  s.send_segs.assign(group_size, {});
  s.recv_segs.assign(group_size, {});
  for (const Xfer& x : s.sends) s.send_segs[x.peer] = {x.at, x.count};
  for (const Xfer& x : s.recvs) s.recv_segs[x.peer] = {x.at, x.count};
}

// Allgatherv and the reductions fit by the rules of workspace.hpp (allgather_fits,
// reduction_fits), which the plan's workspace figure follows too.
bool allgather_fits(const Ctx& c, std::vector<Box>& contrib) {
  if (c.members.size() > kMaxCheckedGroup) return false;
  std::vector<DeviceRoute> routes;
  for (int m : c.members) routes.push_back(m == c.me ? c.route : route(c.mesh, c.step, m));
  return reshard::allgather_fits(c.mesh, c.step, c.members, routes, contrib);
}

void prepare_local(const Ctx& c, StepExec& s) {
  s.mode = Mode::local;
  s.op = c.step.out.op;  // make_partial fills the identity of the reduction it starts
  place_self(c, s);
  if (c.step.local_kind != LocalKind::make_partial) return;
  bool lead = true;  // device 0 of each new pending group keeps the value (as the simulator)
  for (const auto& a : c.step.axes) lead = lead && c.mesh.coord(c.me, c.mesh.axis_index(a)) == 0;
  s.fill_identity = !lead && (c.step.out.op == ReduceOp::sum || c.step.out.op == ReduceOp::prod);
}

void prepare_allgatherv(const Ctx& c, StepExec& s, const std::vector<Box>& contrib) {
  s.mode = Mode::allgatherv;
  const Box& mine = contrib[c.rank_of(c.me)];
  s.count = mine.volume();
  s.send_direct = contiguous_in(mine, c.in_block);
  s.send_at = s.send_direct && s.count ? linear_offset(mine, c.in_block) : 0;
  if (!s.send_direct) {
    s.send_stage = s.count;
    s.sends.push_back(c.self(mine));  // packed once, sent to all
  }
  for (const Box& b : contrib) s.recv_segs.push_back({b.volume() ? linear_offset(b, c.out_block) : 0, b.volume()});
}

void prepare_moving(Ctx& c, StepExec& s, Communicator& comm, bool p2p_only) {
  const bool p2p = p2p_only || c.step.op == Op::permute || c.step.op == Op::exchange;
  if (p2p) {
    s.group = &comm.world();  // peers are device numbers; only the pairs that exchange talk
    s.mode = Mode::p2p;
  } else {
    s.group = &comm.group(c.step.axes);
    c.members = group_of(c.mesh, c.step.axes, c.me);
    std::vector<Box> contrib;
    if (c.step.op == Op::all_gather && allgather_fits(c, contrib)) return prepare_allgatherv(c, s, contrib);
    s.mode = Mode::alltoallv;
  }
  place_sends(c, s);
  place_recvs(c, s, false);
  place_self(c, s);
  try_in_place(s);
  if (s.mode == Mode::alltoallv) fill_segments(s, s.group->size());
}

// Reduce_scatter: sends in group order from the input when they lie there back to back (one
// call), else packed round by round (rs_rounds: the same slabs on every member, since all hold
// the same in-block); the result in place when it is contiguous in the output.
void prepare_reduce_scatter(const Ctx& c, StepExec& s, std::int64_t budget_elems) {
  s.mode = Mode::reduce_scatter;
  const std::size_t g = c.members.size();
  std::vector<Box> shares;
  for (int m : c.members) shares.push_back(intersect(c.in_block, c.step.out.block(c.mesh, m)));
  std::int64_t expect = 0;
  s.send_direct = true;
  for (const Transfer& t : c.route.sends) {
    s.send_direct = s.send_direct && contiguous_in(t.box, c.in_block) && linear_offset(t.box, c.in_block) == expect;
    expect += t.box.volume();
  }
  const RsRounds rounds = s.send_direct ? RsRounds{} : rs_rounds(c.in_block, budget_elems);
  const Box mine = intersect(c.in_block, c.out_block);
  s.stage_recvs = !contiguous_in(mine, c.out_block);
  for (std::size_t j = 0; j < rounds.size(); ++j) {
    const Box slab = rounds.slab(c.in_block, j);
    RsRound r;
    r.counts.assign(g, 0);
    std::int64_t at = 0;
    for (std::size_t i = 0; i < g; ++i) {
      const Box b = intersect(shares[i], slab);
      r.counts[i] = b.volume();
      if (!s.send_direct && r.counts[i])
        r.before.push_back({0, 0, s.in_shape, offset_in(b, c.in_block), 0, extents(b), Shape(b.dims.size(), 0), at,
                            extents(b)});
      at += r.counts[i];
    }
    if (!s.send_direct) s.send_stage = std::max(s.send_stage, at);
    const Box got = intersect(mine, slab);
    if (s.stage_recvs) {
      s.recv_stage = std::max(s.recv_stage, got.volume());
      if (!got.empty())
        r.after.push_back({0, 0, extents(got), Shape(got.dims.size(), 0), 0, s.out_shape, offset_in(got, c.out_block), 0,
                           extents(got)});
    } else {
      r.recv_at = got.empty() ? 0 : linear_offset(got, c.out_block);
    }
    s.rounds.push_back(std::move(r));
  }
}

// Fallback: point-to-point, then this device reduces what it got in group order.
void prepare_reduce_p2p(Ctx& c, StepExec& s, Communicator& comm) {
  s.mode = Mode::p2p_reduce;
  s.group = &comm.world();
  c.members.clear();  // peers by device number on the world group
  place_sends(c, s);
  place_recvs(c, s, true);
  std::size_t next = 0;
  for (const Transfer& t : c.route.recvs)
    s.reduce_order.push_back(t.peer == c.me ? c.self(t.box) : s.recvs[next++]);
}

void prepare_reducing(Ctx& c, StepExec& s, Communicator& comm, bool p2p_only, std::int64_t budget_elems) {
  if (p2p_only) return prepare_reduce_p2p(c, s, comm);
  s.group = &comm.group(c.step.axes);
  c.members = group_of(c.mesh, c.step.axes, c.me);
  const bool all_reduce = c.step.op == Op::all_reduce;
  if (!reshard::reduction_fits(c.mesh, c.step, c.members, c.in_block)) return prepare_reduce_p2p(c, s, comm);
  if (!all_reduce) return prepare_reduce_scatter(c, s, budget_elems);
  s.mode = Mode::allreduce;
  s.count = c.in_block.volume();
}

// The box copies around the collective (StepExec::before / after), from the placement above.
void list_copies(StepExec& s) {
  if (s.mode == Mode::reduce_scatter) return;  // its rounds list their own copies
  const bool packs = s.stage_sends || s.mode == Mode::allgatherv;
  if (packs)  // into send staging, at the box's place there
    for (const Xfer& x : s.sends)
      s.before.push_back({0, 0, s.in_shape, x.in_off, 0, x.extent, Shape(x.extent.size(), 0), x.at, x.extent});
  for (const Xfer& x : s.self)
    s.before.push_back({0, 1, s.in_shape, x.in_off, 0, s.out_shape, x.out_off, 0, x.extent});
  if (s.stage_recvs && s.mode != Mode::p2p_reduce)  // p2p_reduce reduces from staging instead
    for (const Xfer& x : s.recvs)
      s.after.push_back({0, 0, x.extent, Shape(x.extent.size(), 0), x.at, s.out_shape, x.out_off, 0, x.extent});
}

}  // namespace

StepExec prepare_step(Communicator& comm, const Step& step, bool p2p_only, std::int64_t budget_elems) {
  const Mesh& mesh = comm.mesh();
  const int me = comm.device();
  Ctx c{mesh, step, me, step.in.block(mesh, me), step.out.block(mesh, me), route(mesh, step, me), {}};
  StepExec s;
  s.dtype = step.in.dtype;
  s.op = step.in.op;
  s.in_shape = extents(c.in_block);
  s.out_shape = extents(c.out_block);
  if (!step.communicates()) prepare_local(c, s);
  else if (step.reduces()) prepare_reducing(c, s, comm, p2p_only, budget_elems);
  else prepare_moving(c, s, comm, p2p_only);
  list_copies(s);
  return s;
}

}  // namespace reshard::exec
