// simulate_on_device (device_sim.hpp): the simulator's steps with device memory and the CUDA
// kernels; data moves between virtual devices as device-to-device copies.
#include "device_sim.hpp"

#include <chrono>
#include <map>
#include <vector>

#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/host_kernels.hpp"
#include "reshard/route.hpp"

namespace reshard::test {

namespace {

using Shape = std::vector<std::int64_t>;

std::size_t aligned(std::size_t bytes) { return (bytes + 255) / 256 * 256; }

std::vector<std::byte> download(const DeviceBytes& b, std::size_t bytes, void* stream) {
  std::vector<std::byte> h(bytes);
  memcpy_async(h.data(), b.get(), bytes, stream);
  stream_synchronize(stream, "download");
  return h;
}

// Every device's array against the index fill's logical value of its block of `type`.
std::string verify(const Mesh& m, const Type& type, const std::vector<DeviceBytes>& data, double tol, void* stream,
                   const Type& source) {
  const std::size_t elem = size_of(type.dtype);
  for (int d = 0; d < m.num_devices(); ++d) {
    const std::int64_t n = type.local_elements(m, d);
    if (data[d].size() != static_cast<std::size_t>(n) * elem)
      return fmt::format("device {} holds {} bytes, its block of {} has {}", d, data[d].size(), type, n * elem);
    const DeviceBytes* check = &data[d];
    DeviceBytes logical;
    if (type.op != ReduceOp::none) {
      const std::vector<int> group = group_of(m, type.reduce_axes, d);
      if (group.front() != d) continue;  // checked once per group
      logical = DeviceBytes(data[d].size(), DeviceBytes::Kind::device);
      memcpy_async(logical.get(), data[group[0]].get(), data[d].size(), stream);
      for (std::size_t k = 1; k < group.size(); ++k)
        device_reduce_into(logical.get(), data[group[k]].get(), n, type.dtype, type.op, stream);
      check = &logical;
    }
    std::int64_t bad = device_check_index(check->get(), type, m, d, stream, &source);
    if (bad && tol > 0) {  // f16/bf16 sums of rounded partials: the host check takes a tolerance
      std::vector<std::byte> h = download(*check, check->size(), stream);
      bad = check_index(h.data(), type, m, d, tol, &source);
    }
    if (bad) return fmt::format("device {}: {} of {} elements differ from the logical value", d, bad, n);
  }
  return {};
}

}  // namespace

DeviceSimResult simulate_on_device(const Plan& plan, void* stream) {
  const auto t0 = std::chrono::steady_clock::now();
  DeviceSimResult res;
  auto done = [&]() -> DeviceSimResult& {
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
  };
  const Mesh& m = plan.mesh;
  const int P = m.num_devices();
  const std::size_t elem = size_of(plan.src.dtype);
  const double tol = index_fill_tolerance(plan.src, m);
  std::vector<DeviceBytes> cur(P);
  for (int d = 0; d < P; ++d) {
    cur[d] = DeviceBytes(static_cast<std::size_t>(plan.src.local_bytes(m, d)), DeviceBytes::Kind::device);
    device_fill_index(cur[d].get(), plan.src, m, d, stream);
  }
  if (std::string e = verify(m, plan.src, cur, tol, stream, plan.src); !e.empty()) {
    res.error = "source fill: " + e;
    return done();
  }
  for (std::size_t k = 0; k < plan.steps.size(); ++k) {
    const Step& step = plan.steps[k];
    auto fail = [&](const std::string& what) -> DeviceSimResult& {
      res.failed_step = static_cast<int>(k);
      res.error = fmt::format("step {} ({}): {}", k + 1, step, what);
      return done();
    };
    std::vector<DeviceRoute> routes(P);
    for (int d = 0; d < P; ++d) routes[d] = route(m, step, d);
    // Packets: one per (sender, receiver), packed on the sender's side, copied to a buffer of the
    // receiver's. Both sides live in two arenas per step.
    struct Packet {
      Box box;
      std::size_t at = 0, bytes = 0;
    };
    std::map<std::pair<int, int>, Packet> packets;
    std::size_t total = 0;
    for (int s = 0; s < P; ++s)
      for (const Transfer& t : routes[s].sends) {
        auto [it, fresh] = packets.try_emplace({s, t.peer});
        if (!fresh) return fail(fmt::format("device {} sends device {} two boxes", s, t.peer));
        Packet& p = it->second;
        p.box = t.box;
        p.bytes = static_cast<std::size_t>(t.box.volume()) * elem;
        p.at = total;
        total += aligned(p.bytes);
      }
    DeviceBytes sent(total, DeviceBytes::Kind::device), received(total, DeviceBytes::Kind::device);
    for (int s = 0; s < P; ++s) {  // pack
      const Box blk = step.in.block(m, s);
      const Shape shape = extents(blk);
      for (const Transfer& t : routes[s].sends) {
        const Packet& p = packets[{s, t.peer}];
        const Shape ext = extents(t.box), zero(ext.size(), 0), off = offset_in(t.box, blk);
        device_copy_box(cur[s].get(), shape, off, sent.get() + p.at, ext, zero, ext, elem, stream);
      }
    }
    for (const auto& [pair, p] : packets) {  // move: sender's buffer to receiver's, device to device
      memcpy_async(received.get() + p.at, sent.get() + p.at, p.bytes, stream);
      ++res.packets;
      if (pair.first != pair.second) res.bytes_moved += static_cast<std::int64_t>(p.bytes);
    }
    std::vector<DeviceBytes> next(P);
    for (int d = 0; d < P; ++d) {  // unpack
      const Box blk = step.out.block(m, d);
      const Shape shape = extents(blk);
      next[d] = DeviceBytes(static_cast<std::size_t>(blk.volume()) * elem, DeviceBytes::Kind::device);
      memset_async(next[d].get(), 0, next[d].size(), stream);
      bool first = true;
      for (const Transfer& t : routes[d].recvs) {
        auto it = packets.find({t.peer, d});
        if (it == packets.end()) return fail(fmt::format("device {} expects a box from {} that is never sent", d, t.peer));
        if (it->second.box != t.box)
          return fail(fmt::format("device {} expects {} from {}, which sends {}", d, t.box, t.peer, it->second.box));
        const Shape ext = extents(t.box), zero(ext.size(), 0), off = offset_in(t.box, blk);
        const std::byte* src = received.get() + it->second.at;
        if (step.reduces() && !first)
          device_reduce_box(src, ext, zero, next[d].get(), shape, off, ext, step.in.dtype, step.in.op, stream);
        else
          device_copy_box(src, ext, zero, next[d].get(), shape, off, ext, elem, stream);
        first = false;
        packets.erase(it);
      }
      if (step.op == Op::local && step.local_kind == LocalKind::make_partial) {
        bool lead = true;  // device 0 of each new pending group keeps the value
        for (const auto& a : step.axes) lead = lead && m.coord(d, m.axis_index(a)) == 0;
        if (!lead && (step.out.op == ReduceOp::sum || step.out.op == ReduceOp::prod))
          device_fill_identity(next[d].get(), blk.volume(), step.out.dtype, step.out.op, stream);
      }
    }
    if (!packets.empty()) {
      auto [from, to] = packets.begin()->first;
      return fail(fmt::format("device {} sends device {} a box it does not expect", from, to));
    }
    stream_synchronize(stream, "step");  // the arenas are freed next
    cur = std::move(next);
    if (std::string e = verify(m, step.out, cur, tol, stream, plan.src); !e.empty()) return fail(e);
  }
  res.ok = true;
  return done();
}

}  // namespace reshard::test
