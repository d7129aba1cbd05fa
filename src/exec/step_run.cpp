// run_step: pack what must be packed, one collective (or point-to-point round), unpack. The
// local work runs on the host, or as CUDA kernels on the step's stream for device execution.
#include <span>

#include "reshard/device_kernels.hpp"
#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"
#include "step_exec.hpp"

namespace reshard::exec {

namespace {

// The reduction fallback's kernels, on the host or the device (kernels.hpp, device_kernels.hpp).
void box_copy(const StepExec& s, const void* src, const Shape& src_shape, const Shape& src_off, void* dst,
              const Shape& dst_shape, const Shape& dst_off, const Shape& extent, std::size_t elem) {
  if (s.device) device_copy_box(src, src_shape, src_off, dst, dst_shape, dst_off, extent, elem, s.stream);
  else copy_box(src, src_shape, src_off, dst, dst_shape, dst_off, extent, elem);
}
void box_reduce(const StepExec& s, const void* src, const Shape& src_shape, const Shape& src_off, void* dst,
                const Shape& dst_shape, const Shape& dst_off, const Shape& extent) {
  if (s.device) device_reduce_box(src, src_shape, src_off, dst, dst_shape, dst_off, extent, s.dtype, s.op, s.stream);
  else reduce_box(src, src_shape, src_off, dst, dst_shape, dst_off, extent, s.dtype, s.op);
}

// Buffers of one run: the step's input and output blocks and the two staging areas.
struct Bufs {
  const StepExec& s;
  const std::byte* in;
  std::byte* out;
  std::byte* send_stage;
  std::byte* recv_stage;
  std::size_t elem;

  const std::byte* in_at(std::int64_t e) const { return in + e * elem; }
  std::byte* out_at(std::int64_t e) const { return out + e * elem; }
};

// The copies of one side of the collective (StepExec::before / after): on the device one launch
// for all of them, on the host one copy_box each.
void run_copies(const StepExec& s, const std::vector<BoxCopy>& copies, const DeviceCopyBatch& batch,
                std::span<const void* const> srcs, std::span<void* const> dsts) {
  if (s.device) return batch.run(srcs, dsts, s.stream);
  const std::size_t elem = size_of(s.dtype);
  for (const BoxCopy& c : copies)
    copy_box(static_cast<const std::byte*>(srcs[c.src]) + c.src_at * elem, c.src_shape, c.src_offset,
             static_cast<std::byte*>(dsts[c.dst]) + c.dst_at * elem, c.dst_shape, c.dst_offset, c.extent, elem);
}
// Packs for the peers and the box this device keeps.
void before_collective(const Bufs& b) {
  const void* srcs[] = {b.in};
  void* dsts[] = {b.send_stage, b.out};
  run_copies(b.s, b.s.before, b.s.before_batch, srcs, dsts);
}
// Unpacks from the peers.
void after_collective(const Bufs& b) {
  const void* srcs[] = {b.recv_stage};
  void* dsts[] = {b.out};
  run_copies(b.s, b.s.after, b.s.after_batch, srcs, dsts);
}

void run_p2p(const Bufs& b) {
  std::vector<SendMsg> sends;
  std::vector<RecvMsg> recvs;
  const std::byte* sbase = b.s.stage_sends ? b.send_stage : b.in;
  std::byte* rbase = b.s.stage_recvs ? b.recv_stage : b.out;
  for (const Xfer& x : b.s.sends) sends.push_back({x.peer, sbase + x.at * b.elem, x.count});
  for (const Xfer& x : b.s.recvs) recvs.push_back({x.peer, rbase + x.at * b.elem, x.count});
  b.s.group->exchange(sends, recvs, b.s.dtype);
}

// The simulator's order: the first contribution is copied, the rest reduced into it.
void reduce_in_order(const Bufs& b) {
  bool first = true;
  for (const Xfer& x : b.s.reduce_order) {
    Shape zero(x.extent.size(), 0);
    const bool own = x.peer == -1;
    const std::byte* src = own ? b.in : b.recv_stage + x.at * b.elem;
    const Shape& src_shape = own ? b.s.in_shape : x.extent;
    const Shape& src_off = own ? x.in_off : zero;
    if (first) box_copy(b.s, src, src_shape, src_off, b.out, b.s.out_shape, x.out_off, x.extent, b.elem);
    else box_reduce(b.s, src, src_shape, src_off, b.out, b.s.out_shape, x.out_off, x.extent);
    first = false;
  }
}

}  // namespace

void run_step(const StepExec& s, const std::byte* in, std::byte* out, std::byte* send_stage, std::byte* recv_stage) {
  Bufs b{s, in, out, send_stage, recv_stage, size_of(s.dtype)};
  switch (s.mode) {
    case Mode::local:
      if (in != out) before_collective(b);  // in place (runs_in_place): the block is already there
      if (s.fill_identity) {
        std::int64_t n = 1;
        for (auto e : s.out_shape) n *= e;
        if (s.device) device_fill_identity(out, n, s.dtype, s.op, s.stream);
        else fill_identity(out, n, s.dtype, s.op);
      }
      return;
    case Mode::alltoallv:
      before_collective(b);
      if (s.boxes) return s.boxes->run(in, out);
      s.group->alltoallv(s.stage_sends ? b.send_stage : in, s.send_segs, s.stage_recvs ? b.recv_stage : out,
                         s.recv_segs, s.dtype);
      return after_collective(b);
    case Mode::allgatherv:
      before_collective(b);
      s.group->allgatherv(s.send_direct ? b.in_at(s.send_at) : b.send_stage, s.count, out, s.recv_segs, s.dtype);
      return;
    case Mode::reduce_scatter:
      for (const RsRound& r : s.rounds) {
        const void* srcs[] = {in};
        void* send_dsts[] = {send_stage};
        run_copies(s, r.before, r.before_batch, srcs, send_dsts);
        s.group->reduce_scatter(s.send_direct ? in : b.send_stage, s.stage_recvs ? b.recv_stage : b.out_at(r.recv_at),
                                r.counts, s.dtype, s.op);
        const void* stage_srcs[] = {recv_stage};
        void* out_dsts[] = {out};
        run_copies(s, r.after, r.after_batch, stage_srcs, out_dsts);
      }
      return;
    case Mode::allreduce:
      s.group->allreduce(in, out, s.count, s.dtype, s.op);
      return;
    case Mode::p2p:
      before_collective(b);
      if (s.boxes) return s.boxes->run(in, out);
      run_p2p(b);
      return after_collective(b);
    case Mode::p2p_reduce:
      before_collective(b);
      run_p2p(b);
      return reduce_in_order(b);
  }
  throw Error("unknown execution mode");
}

void prepare_device(StepExec& s, void* stream) {
  s.device = true;
  s.stream = stream;
  const std::size_t elem = size_of(s.dtype);
  s.before_batch = DeviceCopyBatch(s.before, elem);
  s.after_batch = DeviceCopyBatch(s.after, elem);
  for (RsRound& r : s.rounds) {
    r.before_batch = DeviceCopyBatch(r.before, elem);
    r.after_batch = DeviceCopyBatch(r.after, elem);
  }
}

}  // namespace reshard::exec
