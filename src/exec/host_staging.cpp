// make_host_staging (host_staging.hpp): pinned host memory between device buffers and a
// host-memory backend.
#include "host_staging.hpp"

#include <algorithm>
#include <map>

#include "reshard/device_memory.hpp"
#include "reshard/error.hpp"

namespace reshard::exec {

namespace {

// Pinned buffers shared by every group of one wrapper (operations run one at a time).
struct Pinned {
  void* stream = nullptr;
  DeviceBytes send, recv;

  std::byte* get(DeviceBytes& b, std::size_t bytes) {
    if (b.size() < bytes) {
      stream_synchronize(stream, "host staging");  // a copy in flight may still read the old one
      b.reset();
      b = DeviceBytes(std::max<std::size_t>(bytes, 1 << 16), DeviceBytes::Kind::pinned);
    }
    return b.get();
  }
};

std::size_t extent_bytes(std::span<const Segment> segs, std::size_t elem) {
  std::int64_t e = 0;
  for (const Segment& s : segs)
    if (s.count) e = std::max(e, s.offset + s.count);
  return static_cast<std::size_t>(e) * elem;
}

class StagedGroup final : public Group {
 public:
  StagedGroup(Group& inner, Pinned& pinned) : inner_(inner), pin_(pinned) {}
  int size() const override { return inner_.size(); }
  int rank() const override { return inner_.rank(); }

  void alltoallv(const void* send, std::span<const Segment> send_segs, void* recv,
                 std::span<const Segment> recv_segs, DType t) override {
    const std::size_t elem = size_of(t);
    const void* s = stage_in(send, send_segs, elem);
    void* r = recv_buffer(recv, extent_bytes(recv_segs, elem));
    inner_.alltoallv(s, send_segs, r, recv_segs, t);
    stage_out(recv, r, recv_segs, elem);
  }

  void allgatherv(const void* send, std::int64_t count, void* recv, std::span<const Segment> recv_segs,
                  DType t) override {
    const std::size_t elem = size_of(t);
    const Segment whole{0, count};
    const void* s = stage_in(send, {&whole, 1}, elem);
    void* r = recv_buffer(recv, extent_bytes(recv_segs, elem));
    inner_.allgatherv(s, count, r, recv_segs, t);
    stage_out(recv, r, recv_segs, elem);
  }

  void reduce_scatter(const void* send, void* recv, std::span<const std::int64_t> counts, DType t,
                      ReduceOp op) override {
    const std::size_t elem = size_of(t);
    std::int64_t total = 0;
    for (std::int64_t c : counts) total += c;
    const Segment all{0, total};
    const Segment mine{0, rank() < static_cast<int>(counts.size()) ? counts[rank()] : 0};
    const void* s = stage_in(send, {&all, 1}, elem);
    void* r = recv_buffer(recv, static_cast<std::size_t>(mine.count) * elem);
    inner_.reduce_scatter(s, r, counts, t, op);
    stage_out(recv, r, {&mine, 1}, elem);
  }

  void allreduce(const void* send, void* recv, std::int64_t count, DType t, ReduceOp op) override {
    const std::size_t elem = size_of(t);
    const Segment all{0, count};
    const void* s = stage_in(send, {&all, 1}, elem);
    void* r = recv_buffer(recv, static_cast<std::size_t>(count) * elem);
    inner_.allreduce(s, r, count, t, op);
    stage_out(recv, r, {&all, 1}, elem);
  }

  void exchange(std::span<const SendMsg> sends, std::span<const RecvMsg> recvs, DType t) override {
    const std::size_t elem = size_of(t);
    std::size_t out = 0, in = 0;
    for (const SendMsg& m : sends)
      if (is_device_pointer(m.data)) out += static_cast<std::size_t>(m.count) * elem;
    for (const RecvMsg& m : recvs)
      if (is_device_pointer(m.data)) in += static_cast<std::size_t>(m.count) * elem;
    std::byte* ps = out ? pin_.get(pin_.send, out) : nullptr;
    std::byte* pr = in ? pin_.get(pin_.recv, in) : nullptr;
    std::vector<SendMsg> s(sends.begin(), sends.end());
    std::vector<RecvMsg> r(recvs.begin(), recvs.end());
    std::size_t at = 0;
    for (SendMsg& m : s)
      if (is_device_pointer(m.data)) {
        memcpy_async(ps + at, m.data, static_cast<std::size_t>(m.count) * elem, pin_.stream);
        m.data = ps + at;
        at += static_cast<std::size_t>(m.count) * elem;
      }
    if (out || in) stream_synchronize(pin_.stream, "host staging of exchange");
    at = 0;
    for (RecvMsg& m : r)
      if (is_device_pointer(m.data)) {
        m.data = pr + at;
        at += static_cast<std::size_t>(m.count) * elem;
      }
    inner_.exchange(s, r, t);
    for (std::size_t k = 0; k < r.size(); ++k)
      if (r[k].data != recvs[k].data)
        memcpy_async(recvs[k].data, r[k].data, static_cast<std::size_t>(r[k].count) * elem, pin_.stream);
  }

  void barrier() override {
    stream_synchronize(pin_.stream, "host staging of barrier");
    inner_.barrier();
  }

 private:
  // `send`'s segments in pinned memory (at the same offsets), once the stream has run up to
  // here; host memory as it is.
  const void* stage_in(const void* send, std::span<const Segment> segs, std::size_t elem) {
    if (!is_device_pointer(send)) return send;
    const std::size_t bytes = extent_bytes(segs, elem);
    if (!bytes) return send;
    std::byte* p = pin_.get(pin_.send, bytes);
    for (const Segment& s : segs)
      if (s.count)
        memcpy_async(p + s.offset * elem, static_cast<const std::byte*>(send) + s.offset * elem,
                     static_cast<std::size_t>(s.count) * elem, pin_.stream);
    stream_synchronize(pin_.stream, "host staging");
    return p;
  }
  // Where the host operation receives: pinned memory for device buffers, once the copies out
  // of it that earlier operations enqueued have run.
  void* recv_buffer(void* recv, std::size_t bytes) {
    if (!bytes || !is_device_pointer(recv)) return recv;
    std::byte* p = pin_.get(pin_.recv, bytes);
    stream_synchronize(pin_.stream, "host staging");
    return p;
  }
  // The received segments back into device memory (enqueued on the stream).
  void stage_out(void* recv, void* staged, std::span<const Segment> segs, std::size_t elem) {
    if (staged == recv) return;
    for (const Segment& s : segs)
      if (s.count)
        memcpy_async(static_cast<std::byte*>(recv) + s.offset * elem, static_cast<std::byte*>(staged) + s.offset * elem,
                     static_cast<std::size_t>(s.count) * elem, pin_.stream);
  }

  Group& inner_;
  Pinned& pin_;
};

class StagedCommunicator final : public Communicator {
 public:
  StagedCommunicator(Communicator& inner, void* stream) : inner_(inner), world_(inner.world(), pin_) {
    pin_.stream = stream;
  }
  ~StagedCommunicator() override {
    try {
      stream_synchronize(pin_.stream, "host staging");  // no copy may still use the pinned buffers
    } catch (...) {
    }
  }
  std::string_view backend() const override { return inner_.backend(); }
  Memory memory() const override { return Memory::device; }
  const Mesh& mesh() const override { return inner_.mesh(); }
  int device() const override { return inner_.device(); }
  Group& world() override { return world_; }
  Group& group(const std::vector<std::string>& axes) override {
    auto it = groups_.find(axes);
    if (it == groups_.end()) it = groups_.emplace(axes, std::make_unique<StagedGroup>(inner_.group(axes), pin_)).first;
    return *it->second;
  }
  void synchronize() override { stream_synchronize(pin_.stream, "device execution"); }
  void* stream() const override { return pin_.stream; }

 private:
  Communicator& inner_;
  Pinned pin_;
  StagedGroup world_;
  std::map<std::vector<std::string>, std::unique_ptr<StagedGroup>> groups_;
};

}  // namespace

std::unique_ptr<Communicator> make_host_staging(Communicator& inner, void* stream) {
  return std::make_unique<StagedCommunicator>(inner, stream);
}

}  // namespace reshard::exec
