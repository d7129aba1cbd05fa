// The executor's workspace as a function of the plan (workspace.hpp). The staging rules here
// mirror prepare_step (src/exec/step_prepare.cpp) decision for decision; the MPI test
// "plan workspace equals the executor's" holds the two together on every public case.
#include "reshard/workspace.hpp"

#include <algorithm>
#include <map>

#include "indexed.hpp"
#include "reshard/route.hpp"

namespace reshard {

std::int64_t place_staging(const std::vector<int>& in_slot, const std::vector<int>& out_slot,
                           const std::int64_t (&capacity)[kNumSlots], const std::vector<StepStaging>& staging_bytes,
                           std::vector<StagingPlace>* send_at, std::vector<StagingPlace>* recv_at) {
  std::int64_t staging = 0;
  for (std::size_t k = 0; k < staging_bytes.size(); ++k) {
    std::int64_t used[kNumSlots] = {}, dedicated = 0;
    // A step reads only its input slot and writes only its output slot: the others are free.
    auto place = [&](std::int64_t bytes) {
      for (int s = 0; s < kNumSlots && bytes; ++s)
        if (s != in_slot[k] && s != out_slot[k] && capacity[s] - used[s] >= bytes) {
          used[s] += bytes;
          return StagingPlace{s, used[s] - bytes};
        }
      dedicated += bytes;
      return StagingPlace{kStagingSlot, dedicated - bytes};
    };
    StagingPlace s = place(staging_bytes[k].send);
    StagingPlace r = place(staging_bytes[k].recv);
    if (send_at) send_at->push_back(s);
    if (recv_at) recv_at->push_back(r);
    staging = std::max(staging, dedicated);
  }
  return staging;
}

namespace {

// One side of a moving step (place_side in step_prepare.cpp): packed when some box exchanged
// with another device is not contiguous in the block (or `force`), then all of them are.
std::int64_t side_staging(const std::vector<Transfer>& ts, int me, const Box& block, bool force) {
  bool staged = force;
  std::int64_t total = 0;
  for (const Transfer& t : ts)
    if (t.peer != me) {
      staged = staged || !contiguous_in(t.box, block);
      total += t.box.volume();
    }
  return staged ? total : 0;
}

// Alltoallv and point-to-point steps; with a transport that moves boxes, a step that would
// stage moves its boxes in place instead (try_in_place: an all-to-all's members all do so
// when any would stage, so no member stages).
StepStaging moving_staging(const DeviceRoute& r, int me, const Box& in_block, const Box& out_block,
                           const StagingRules& rules) {
  if (rules.moves_boxes) return {};
  return {side_staging(r.sends, me, in_block, false), side_staging(r.recvs, me, out_block, false)};
}

// The reduce fallback (prepare_reduce_p2p): sends packed as above, receives always staged.
StepStaging p2p_reduce_staging(const DeviceRoute& r, int me, const Box& in_block, const Box& out_block) {
  return {side_staging(r.sends, me, in_block, false), side_staging(r.recvs, me, out_block, true)};
}

// Reduce_scatter over members that all hold the same in-block (prepare_reduce_scatter): the
// shares go from the input when they lie there back to back in group order, else they are
// packed, round by round (rs_rounds).
bool rs_direct(const std::vector<Transfer>& sends, const Box& in_block) {
  std::int64_t expect = 0;
  bool direct = true;
  for (const Transfer& t : sends) {
    direct = direct && contiguous_in(t.box, in_block) && linear_offset(t.box, in_block) == expect;
    expect += t.box.volume();
  }
  return direct;
}
std::vector<Box> rs_shares(const Mesh& mesh, const Step& step, const std::vector<int>& members, const Box& in_block) {
  std::vector<Box> shares;
  for (int m : members) shares.push_back(intersect(in_block, step.out.block(mesh, m)));
  return shares;
}
std::int64_t rs_recv_staging(const Box& in_block, const Box& out_block, const RsRounds& rounds) {
  Box mine = intersect(in_block, out_block);
  if (contiguous_in(mine, out_block)) return 0;
  std::int64_t most = 0;
  for (std::size_t j = 0; j < rounds.size(); ++j) most = std::max(most, intersect(mine, rounds.slab(in_block, j)).volume());
  return most;
}
StepStaging rs_staging(const std::vector<Transfer>& sends, const Box& in_block, const Box& out_block,
                       const std::vector<Box>& shares, std::int64_t budget_elems) {
  const bool direct = rs_direct(sends, in_block);  // then one call, from the input
  const RsRounds rounds = direct ? RsRounds{} : rs_rounds(in_block, budget_elems);
  return {direct ? 0 : rs_round_pack(rounds, in_block, shares), rs_recv_staging(in_block, out_block, rounds)};
}

std::int64_t allgatherv_send_staging(const Box& mine, const Box& in_block) {
  return contiguous_in(mine, in_block) ? 0 : mine.volume();
}

bool moves_by_p2p(const Step& step, const StagingRules& rules) {
  return rules.p2p_only || step.op == Op::permute || step.op == Op::exchange;
}

// Whether any device can stage in this step under these rules (the others are all zero).
bool may_stage(const Step& step, const StagingRules& rules) {
  if (!step.communicates()) return false;
  if (step.reduces()) return true;
  if (!rules.moves_boxes) return true;
  return step.op == Op::all_gather && !moves_by_p2p(step, rules);
}

}  // namespace

Box RsRounds::slab(const Box& in_block, std::size_t j) const {
  if (dim < 0) return in_block;
  Box b = in_block;
  b.dims[dim] = slabs[j];
  return b;
}

RsRounds rs_rounds(const Box& in_block, std::int64_t budget_elems) {
  RsRounds r;
  const std::int64_t total = in_block.volume();
  if (budget_elems < 0 || total <= budget_elems) return r;
  int d = 0;
  while (d < static_cast<int>(in_block.dims.size()) && in_block.dims[d].extent() <= 1) ++d;
  if (d == static_cast<int>(in_block.dims.size())) return r;  // one element: nothing to cut
  const Interval iv = in_block.dims[d];
  const std::int64_t row = total / iv.extent();
  const std::int64_t per = std::max<std::int64_t>(1, budget_elems / row);
  r.dim = d;
  for (std::int64_t lo = iv.lo; lo < iv.hi; lo += per) r.slabs.push_back({lo, std::min(iv.hi, lo + per)});
  return r;
}

std::int64_t rs_round_pack(const RsRounds& r, const Box& in_block, const std::vector<Box>& shares) {
  std::int64_t most = 0;
  for (std::size_t j = 0; j < r.size(); ++j) {
    const Box slab = r.slab(in_block, j);
    std::int64_t pack = 0;
    for (const Box& b : shares) pack += intersect(b, slab).volume();
    most = std::max(most, pack);
  }
  return most;
}

std::int64_t staging_budget_bytes(const Plan& plan) {
  const BufferPlan bp = buffer_plan(plan);
  const std::int64_t bound = std::max(plan.src.max_local_bytes(plan.mesh), plan.dst.max_local_bytes(plan.mesh));
  return std::max<std::int64_t>(0, bound - bp.scratch_bytes[1] - bp.scratch_bytes[2]);
}

bool allgather_fits(const Mesh& mesh, const Step& step, const std::vector<int>& members,
                    const std::vector<DeviceRoute>& routes, std::vector<Box>& contrib) {
  const std::size_t g = members.size();
  if (g > kMaxCheckedGroup) return false;
  Box nothing;
  nothing.dims.assign(step.in.dims.size(), Interval{});
  contrib.assign(g, nothing);
  auto rank_of = [&](int dev) { return std::find(members.begin(), members.end(), dev) - members.begin(); };
  std::size_t senders = 0;
  for (std::size_t i = 0; i < g; ++i) {
    const auto& sends = routes[i].sends;
    if (sends.empty()) continue;
    if (sends.size() != g) return false;
    for (const Transfer& t : sends)
      if (t.box != sends.front().box) return false;
    contrib[i] = sends.front().box;
    ++senders;
  }
  for (std::size_t i = 0; i < g; ++i) {
    Box out = step.out.block(mesh, members[i]);
    if (routes[i].recvs.size() != senders) return false;
    for (const Transfer& t : routes[i].recvs)
      if (t.box != contrib[rank_of(t.peer)] || !contiguous_in(t.box, out)) return false;
  }
  return true;
}

bool reduction_fits(const Mesh& mesh, const Step& step, const std::vector<int>& members, const Box& in_block) {
  for (int m : members) {
    if (step.in.block(mesh, m) != in_block) return false;
    if (step.op == Op::all_reduce && step.out.block(mesh, m) != in_block) return false;
  }
  return true;
}

StepStaging device_step_staging(const Mesh& mesh, const Step& step, int me, const StagingRules& rules,
                                std::int64_t budget_elems) {
  if (!step.communicates()) return {};
  const Box in_block = step.in.block(mesh, me), out_block = step.out.block(mesh, me);
  const DeviceRoute r = route(mesh, step, me);
  if (step.reduces()) {
    const std::vector<int> members = group_of(mesh, step.axes, me);
    if (!rules.p2p_only && reduction_fits(mesh, step, members, in_block)) {
      if (step.op == Op::all_reduce) return {};
      return rs_staging(r.sends, in_block, out_block, rs_shares(mesh, step, members, in_block), budget_elems);
    }
    return p2p_reduce_staging(r, me, in_block, out_block);
  }
  if (!moves_by_p2p(step, rules) && step.op == Op::all_gather) {
    std::vector<int> members = group_of(mesh, step.axes, me);
    if (members.size() <= kMaxCheckedGroup) {
      std::vector<DeviceRoute> routes;
      for (int m : members) routes.push_back(m == me ? r : route(mesh, step, m));
      std::vector<Box> contrib;
      if (allgather_fits(mesh, step, members, routes, contrib)) {
        const auto i = std::find(members.begin(), members.end(), me) - members.begin();
        return {allgatherv_send_staging(contrib[i], in_block), 0};
      }
    }
  }
  return moving_staging(r, me, in_block, out_block, rules);
}

std::vector<StepStaging> group_step_staging(const Mesh& mesh, const Step& step, const std::vector<int>& members,
                                            const StagingRules& rules, std::int64_t budget_elems) {
  const std::size_t g = members.size();
  std::vector<StepStaging> out(g);
  if (!may_stage(step, rules)) return out;
  if (step.reduces()) {
    const Box in0 = step.in.block(mesh, members[0]);
    if (!rules.p2p_only && reduction_fits(mesh, step, members, in0)) {
      if (step.op == Op::all_reduce) return out;
      // Every member holds in0, so every member sends the same shares: pack decided once.
      const std::vector<Transfer> sends = route(mesh, step, members[0]).sends;
      const std::vector<Box> shares = rs_shares(mesh, step, members, in0);
      for (std::size_t i = 0; i < g; ++i)
        out[i] = rs_staging(sends, in0, step.out.block(mesh, members[i]), shares, budget_elems);
      return out;
    }
    for (std::size_t i = 0; i < g; ++i)
      out[i] = p2p_reduce_staging(route(mesh, step, members[i]), members[i], step.in.block(mesh, members[i]),
                                  step.out.block(mesh, members[i]));
    return out;
  }
  std::vector<DeviceRoute> routes;
  if (step.op == Op::all_gather && !moves_by_p2p(step, rules) && g <= kMaxCheckedGroup) {
    for (int m : members) routes.push_back(route(mesh, step, m));
    std::vector<Box> contrib;
    if (allgather_fits(mesh, step, members, routes, contrib)) {
      for (std::size_t i = 0; i < g; ++i)
        out[i] = {allgatherv_send_staging(contrib[i], step.in.block(mesh, members[i])), 0};
      return out;
    }
  }
  if (rules.moves_boxes) return out;
  for (std::size_t i = 0; i < g; ++i)
    out[i] = moving_staging(routes.empty() ? route(mesh, step, members[i]) : routes[i], members[i],
                            step.in.block(mesh, members[i]), step.out.block(mesh, members[i]), rules);
  return out;
}

std::vector<std::int64_t> local_bytes_per_device(const Type& t, const Mesh& mesh) {
  const detail::IndexedType it(t, mesh);
  const auto elem = static_cast<std::int64_t>(size_of(t.dtype));
  std::vector<int> all(mesh.num_axes()), c(mesh.num_axes(), 0);
  for (int a = 0; a < mesh.num_axes(); ++a) all[a] = a;
  std::vector<std::int64_t> r;
  r.reserve(mesh.num_devices());
  do {  // devices in number order: the last axis varies fastest
    std::int64_t v = elem;
    for (int d = 0; d < static_cast<int>(it.dims.size()); ++d) v *= it.interval(d, c, mesh).extent();
    r.push_back(v);
  } while (detail::next_coords(c, all, mesh));
  return r;
}

namespace {

// buffer_plan's slots as the executor reads them (assign_slots in executor.cpp).
void slots_of(const Plan& plan, std::vector<int>& in_slot, std::vector<int>& out_slot) {
  BufferPlan bp = buffer_plan(plan);
  const std::size_t n = plan.steps.size();
  in_slot.assign(n, kInputSlot);
  out_slot = bp.slot;
  for (std::size_t k = 1; k < n; ++k) in_slot[k] = out_slot[k - 1];
}

// Scratch capacities of one device and its total workspace, given its staging per step.
std::int64_t workspace_of(const std::vector<int>& in_slot, const std::vector<int>& out_slot,
                          const std::vector<std::int64_t>& out_bytes, std::int64_t dst_bytes,
                          const std::vector<StepStaging>& staging_bytes) {
  std::int64_t cap[kNumSlots] = {dst_bytes, 0, 0};
  for (std::size_t k = 0; k < out_slot.size(); ++k)
    if (out_slot[k] != 0) cap[out_slot[k]] = std::max(cap[out_slot[k]], out_bytes[k]);
  return cap[1] + cap[2] + place_staging(in_slot, out_slot, cap, staging_bytes);
}

StepStaging times(StepStaging s, std::int64_t elem) { return {s.send * elem, s.recv * elem}; }

}  // namespace

std::int64_t device_workspace_bytes(const Plan& plan, int device, const StagingRules& rules) {
  std::vector<int> in_slot, out_slot;
  slots_of(plan, in_slot, out_slot);
  const auto elem = static_cast<std::int64_t>(size_of(plan.src.dtype));
  const std::int64_t budget = staging_budget_bytes(plan) / elem;
  std::vector<std::int64_t> out_bytes;
  std::vector<StepStaging> staging;
  for (const Step& s : plan.steps) {
    out_bytes.push_back(s.out.local_bytes(plan.mesh, device));
    staging.push_back(times(device_step_staging(plan.mesh, s, device, rules, budget), elem));
  }
  return workspace_of(in_slot, out_slot, out_bytes, plan.dst.local_bytes(plan.mesh, device), staging);
}

namespace {

// Staging of one step on every device, one group of each class routed. Groups are enumerated
// by their first member (coordinate 0 on every group axis); a group's class is the list of its
// members' in- and out-blocks in group order, translated so that the first member's in-block
// starts at 0 in every dim. Routes, contiguity, box equality and the holder choice (made from
// group positions only) are all invariant under that translation, so groups of one class stage
// alike position by position.
std::vector<StepStaging> step_staging_by_class(const Mesh& mesh, const Step& step, const StagingRules& rules,
                                               std::int64_t elem, std::int64_t budget_elems) {
  const int P = mesh.num_devices();
  std::vector<StepStaging> per_device(P);
  if (!may_stage(step, rules)) return per_device;
  detail::IndexedType in(step.in, mesh), out(step.out, mesh);
  const std::vector<int> A = detail::axis_indices(mesh, step.axes);
  std::vector<int> rest;  // the axes that number the groups
  for (int a = 0; a < mesh.num_axes(); ++a)
    if (std::find(A.begin(), A.end(), a) == A.end()) rest.push_back(a);
  std::map<std::vector<std::int64_t>, std::vector<StepStaging>> classes;
  std::vector<int> c(mesh.num_axes(), 0);
  std::vector<std::int64_t> key;
  do {
    const std::vector<int> members = group_of(mesh, step.axes, detail::device_of(mesh, c));
    key.clear();
    const Box first = in.block(c, mesh);
    std::vector<int> mc = c;
    do {
      for (const detail::IndexedType* t : {&in, &out})
        for (int d = 0; d < static_cast<int>(t->dims.size()); ++d) {
          Interval iv = t->interval(d, mc, mesh);
          key.push_back(iv.lo - first.dims[d].lo);
          key.push_back(iv.hi - first.dims[d].lo);
        }
    } while (detail::next_coords(mc, A, mesh));
    auto it = classes.find(key);
    if (it == classes.end()) it = classes.emplace(key, group_step_staging(mesh, step, members, rules, budget_elems)).first;
    for (std::size_t i = 0; i < members.size(); ++i) per_device[members[i]] = times(it->second[i], elem);
  } while (detail::next_coords(c, rest, mesh));
  return per_device;
}

}  // namespace

std::vector<std::int64_t> workspace_per_device(const Plan& plan, const StagingRules& rules) {
  const Mesh& m = plan.mesh;
  const int P = m.num_devices();
  std::vector<int> in_slot, out_slot;
  slots_of(plan, in_slot, out_slot);
  const auto elem = static_cast<std::int64_t>(size_of(plan.src.dtype));
  const std::size_t n = plan.steps.size();
  std::vector<std::vector<StepStaging>> staging(n);
  std::vector<std::vector<std::int64_t>> out_bytes(n);
  const std::int64_t budget = staging_budget_bytes(plan) / elem;
  for (std::size_t k = 0; k < n; ++k) {
    staging[k] = step_staging_by_class(m, plan.steps[k], rules, elem, budget);
    out_bytes[k] = local_bytes_per_device(plan.steps[k].out, m);
  }
  const std::vector<std::int64_t> dst_bytes = local_bytes_per_device(plan.dst, m);
  std::vector<std::int64_t> result(P);
  std::vector<std::int64_t> ob(n);
  std::vector<StepStaging> sb(n);
  for (int d = 0; d < P; ++d) {
    for (std::size_t k = 0; k < n; ++k) ob[k] = out_bytes[k][d], sb[k] = staging[k][d];
    result[d] = workspace_of(in_slot, out_slot, ob, dst_bytes[d], sb);
  }
  return result;
}

}  // namespace reshard
