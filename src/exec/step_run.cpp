// run_step: pack what must be packed, one collective (or point-to-point round), unpack. The
// local work runs on the host, or as CUDA kernels on the step's stream for device execution.
#include "reshard/device_kernels.hpp"
#include "reshard/error.hpp"
#include "reshard/kernels.hpp"
#include "step_exec.hpp"

namespace reshard::exec {

namespace {

// The local kernels, on the host or the device (kernels.hpp, device_kernels.hpp).
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

void pack(const Bufs& b, const Xfer& x) {
  Shape zero(x.extent.size(), 0);
  box_copy(b.s, b.in, b.s.in_shape, x.in_off, b.send_stage + x.at * b.elem, x.extent, zero, x.extent, b.elem);
}
void unpack(const Bufs& b, const Xfer& x) {
  Shape zero(x.extent.size(), 0);
  box_copy(b.s, b.recv_stage + x.at * b.elem, x.extent, zero, b.out, b.s.out_shape, x.out_off, x.extent, b.elem);
}
void pack_sends(const Bufs& b) {
  if (b.s.stage_sends || b.s.mode == Mode::allgatherv || b.s.mode == Mode::reduce_scatter)
    for (const Xfer& x : b.s.sends) pack(b, x);  // those modes list sends only when packing
}
void unpack_recvs(const Bufs& b) {
  if (b.s.stage_recvs)
    for (const Xfer& x : b.s.recvs) unpack(b, x);
}
void copy_self(const Bufs& b) {
  for (const Xfer& x : b.s.self)
    box_copy(b.s, b.in, b.s.in_shape, x.in_off, b.out, b.s.out_shape, x.out_off, x.extent, b.elem);
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
      copy_self(b);
      if (s.fill_identity) {
        std::int64_t n = 1;
        for (auto e : s.out_shape) n *= e;
        if (s.device) device_fill_identity(out, n, s.dtype, s.op, s.stream);
        else fill_identity(out, n, s.dtype, s.op);
      }
      return;
    case Mode::alltoallv:
      pack_sends(b);
      copy_self(b);
      s.group->alltoallv(s.stage_sends ? b.send_stage : in, s.send_segs, s.stage_recvs ? b.recv_stage : out,
                         s.recv_segs, s.dtype);
      return unpack_recvs(b);
    case Mode::allgatherv:
      pack_sends(b);
      s.group->allgatherv(s.send_direct ? b.in_at(s.send_at) : b.send_stage, s.count, out, s.recv_segs, s.dtype);
      return;
    case Mode::reduce_scatter:
      pack_sends(b);
      s.group->reduce_scatter(s.send_direct ? in : b.send_stage,
                              s.stage_recvs ? b.recv_stage : b.out_at(s.recvs.front().at), s.counts, s.dtype,
                              s.op);
      return unpack_recvs(b);
    case Mode::allreduce:
      s.group->allreduce(in, out, s.count, s.dtype, s.op);
      return;
    case Mode::p2p:
      pack_sends(b);
      copy_self(b);
      run_p2p(b);
      return unpack_recvs(b);
    case Mode::p2p_reduce:
      pack_sends(b);
      run_p2p(b);
      return reduce_in_order(b);
  }
  throw Error("unknown execution mode");
}

}  // namespace reshard::exec
