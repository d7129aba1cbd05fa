#pragma once
// How a cross-mesh plan's moves become messages: shared by the planner's figures, the
// simulator and the MPI executor, so that all three stage exactly the same bytes.
//
// A phase is one (bucket, round). In a phase, the moves from one rank to another travel as
// few MPI messages as the data allows:
//  - a move of at least XPlan::direct_min_bytes goes alone, read from the sender's buffer and
//    written into the receiver's in place (a derived datatype where the box is strided): no
//    pack, no unpack, no staging; over shared memory the MPI library copies a contiguous one
//    once (process_vm_readv), which one packed message of many arrays cannot do;
//  - every other move of the pair shares one packed message (all arrays together), packed and
//    unpacked through staging, moves in plan order; one such move alone is in place on
//    whichever side it is contiguous.
// Messages of a pair keep their order on both sides (MPI does not reorder messages between
// two ranks with the same tag), so each receive matches the send it was planned for.
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
  std::vector<std::size_t> moves;  // indices into XPlan::moves, in plan order
  std::int64_t bytes = 0;
  std::int64_t send_staging = 0, recv_staging = 0;  // 0 where it moves in place
  bool alone = false;  // one large move, in place on both sides (strided: a derived datatype)
};

struct Phase {
  int bucket = 0, round = 0;
  bool relays = false;  // some sender forwards what an earlier round delivered
  std::vector<Message> messages;    // by (from, to); a pair's messages in the order they are posted
  std::vector<std::size_t> locals;  // moves with from == to
};

inline std::int64_t move_bytes(const XPlan& p, const XMove& m) {
  return m.box.volume() * static_cast<std::int64_t>(size_of(p.arrays[m.array].src.dtype));
}

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
      // The moves of one (from, to) pair: large contiguous ones alone, the rest packed.
      Message packed{m.from, m.to, {}, 0, 0, 0, false};
      std::vector<Message> alone;
      while (i < p.moves.size() && p.moves[i].bucket == ph.bucket && p.moves[i].round == ph.round &&
             p.moves[i].from == m.from && p.moves[i].to == m.to) {
        const XMove& x = p.moves[i];
        const std::int64_t b = move_bytes(p, x);
        ph.relays = ph.relays || x.relay;
        if (b >= p.direct_min_bytes) {
          alone.push_back({m.from, m.to, {i}, b, 0, 0, true});
        } else {
          packed.moves.push_back(i);
          packed.bytes += b;
        }
        ++i;
      }
      if (packed.moves.size() == 1) {
        const XMove& f = p.moves[packed.moves[0]];
        packed.send_staging = is_contiguous(f.box, send_block(p, f)) ? 0 : packed.bytes;
        packed.recv_staging = is_contiguous(f.box, recv_block(p, f)) ? 0 : packed.bytes;
      } else {
        packed.send_staging = packed.recv_staging = packed.bytes;
      }
      if (!packed.moves.empty()) ph.messages.push_back(std::move(packed));
      for (Message& a : alone) ph.messages.push_back(std::move(a));
    }
    out.push_back(std::move(ph));
  }
  return out;
}

}  // namespace reshard::xdetail
