#pragma once
// How a cross-mesh plan's moves become messages: shared by the planner's figures, the
// simulator and the MPI executor, so that all three stage exactly the same bytes.
//
// A phase is one (bucket, round). In a phase, all moves from one rank to another form one
// message (all arrays together). A message of a single box that is contiguous in the sender's
// buffer is sent from it in place; one contiguous in the receiver's target shard lands in
// place; other messages are packed (unpacked) through staging, moves in plan order.
#include <cstdint>
#include <vector>

#include "reshard/xplan.hpp"

namespace reshard::xdetail {

// Whether `box` is one contiguous run of the dense row-major array `block`.
inline bool is_contiguous(const Box& box, const Box& block) {
  const std::size_t n = box.dims.size();
  int k = -1;
  for (std::size_t d = 0; d < n; ++d)
    if (box.dims[d].extent() != block.dims[d].extent()) k = static_cast<int>(d);
  for (int d = 0; d < k; ++d)
    if (box.dims[d].extent() != 1) return false;
  return true;
}

// The block a move reads on its sender: its source shard of mid, or (relay) its target shard.
inline Box send_block(const XPlan& p, const XMove& m) {
  const Mesh sm = p.src_mesh.without_ranks(), dm = p.dst_mesh.without_ranks();
  return m.relay ? p.arrays[m.array].dst.block(dm, p.dst_mesh.device_of(m.from))
                 : p.mid[m.array].block(sm, p.src_mesh.device_of(m.from));
}
inline Box recv_block(const XPlan& p, const XMove& m) {
  return p.arrays[m.array].dst.block(p.dst_mesh.without_ranks(), p.dst_mesh.device_of(m.to));
}

struct Message {
  int from = 0, to = 0;
  std::size_t first = 0, last = 0;  // moves [first, last) of XPlan::moves
  std::int64_t bytes = 0;
  std::int64_t send_staging = 0, recv_staging = 0;  // 0 where it moves in place
};

struct Phase {
  int bucket = 0, round = 0;
  bool relays = false;  // some sender forwards what an earlier round delivered
  std::vector<Message> messages;   // by (from, to)
  std::vector<std::size_t> locals;  // moves with from == to
};

inline std::vector<Phase> phases_of(const XPlan& p) {
  std::vector<Phase> out;
  for (std::size_t i = 0; i < p.moves.size();) {
    Phase ph;
    ph.bucket = p.moves[i].bucket;
    ph.round = p.moves[i].round;
    while (i < p.moves.size() && p.moves[i].bucket == ph.bucket && p.moves[i].round == ph.round) {
      const XMove& m = p.moves[i];
      if (m.from == m.to) {
        ph.locals.push_back(i++);
        continue;
      }
      Message msg{m.from, m.to, i, i, 0, 0, 0};
      while (i < p.moves.size() && p.moves[i].bucket == ph.bucket && p.moves[i].round == ph.round &&
             p.moves[i].from == m.from && p.moves[i].to == m.to) {
        const XMove& x = p.moves[i];
        msg.bytes += x.box.volume() * static_cast<std::int64_t>(size_of(p.arrays[x.array].src.dtype));
        ph.relays = ph.relays || x.relay;
        ++i;
      }
      msg.last = i;
      const bool one = msg.last - msg.first == 1;
      const XMove& f = p.moves[msg.first];
      msg.send_staging = one && is_contiguous(f.box, send_block(p, f)) ? 0 : msg.bytes;
      msg.recv_staging = one && is_contiguous(f.box, recv_block(p, f)) ? 0 : msg.bytes;
      ph.messages.push_back(msg);
    }
    out.push_back(std::move(ph));
  }
  return out;
}

}  // namespace reshard::xdetail
