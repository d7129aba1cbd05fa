// DeviceCopyBatch (reshard/device_kernels.hpp): the boxes of one side of a step, checked and
// walked once on the host; per alignment of the buffers, a table (box_batch.hpp) uploaded to
// device memory once; per run, one launch of the batched copy kernel (box_batch.cu).
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "launch.hpp"
#include "reshard/detail/api_walks.hpp"
#include "reshard/detail/box_batch.hpp"
#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"

namespace reshard {

static_assert(DeviceCopyBatch::kMaxBuffers == detail::kMaxBatchArrays);

struct DeviceCopyBatch::Impl {
  std::vector<detail::BatchInput> inputs;  // non-empty boxes only
  std::size_t elem_size = 0;
  std::int64_t bytes = 0;
  bool src_used[kMaxBuffers] = {}, dst_used[kMaxBuffers] = {};

  // A table on the device: first_tile (n + 1 int64) then n BatchBox, one allocation.
  struct Uploaded {
    std::vector<std::byte> host;  // kept until the object dies: the upload reads it
    DeviceBytes device;
    int n = 0;
    std::int64_t tiles = 0;
    bool index32 = true;
  };
  // By the address of every buffer modulo 16: that is all the table depends on.
  std::map<std::uint64_t, Uploaded> tables;

  const Uploaded& table_for(const cuda_detail::BatchArrays& a, void* stream);
};

namespace {

std::uint64_t alignment_key(const cuda_detail::BatchArrays& a) {
  std::uint64_t key = 0;
  for (int i = 0; i < detail::kMaxBatchArrays; ++i) {
    key = key << 4 | (reinterpret_cast<std::uintptr_t>(a.src[i]) & 15);
    key = key << 4 | (reinterpret_cast<std::uintptr_t>(a.dst[i]) & 15);
  }
  return key;
}

}  // namespace

const DeviceCopyBatch::Impl::Uploaded& DeviceCopyBatch::Impl::table_for(
    const cuda_detail::BatchArrays& a, void* stream) {
  const std::uint64_t key = alignment_key(a);
  if (auto it = tables.find(key); it != tables.end()) return it->second;
  std::uintptr_t src_addr[detail::kMaxBatchArrays], dst_addr[detail::kMaxBatchArrays];
  for (int i = 0; i < detail::kMaxBatchArrays; ++i) {
    src_addr[i] = reinterpret_cast<std::uintptr_t>(a.src[i]);
    dst_addr[i] = reinterpret_cast<std::uintptr_t>(a.dst[i]);
  }
  const detail::BatchTable t = detail::make_batch_table(
      inputs.data(), static_cast<int>(inputs.size()), elem_size, src_addr, dst_addr);
  Uploaded u;
  u.n = static_cast<int>(t.boxes.size());
  u.tiles = t.tiles();
  u.index32 = t.index32;
  const std::size_t tiles_bytes = t.first_tile.size() * sizeof(std::int64_t);
  const std::size_t boxes_bytes = t.boxes.size() * sizeof(detail::BatchBox);
  static_assert(alignof(detail::BatchBox) <= alignof(std::int64_t));
  u.host.resize(tiles_bytes + boxes_bytes);
  std::memcpy(u.host.data(), t.first_tile.data(), tiles_bytes);
  std::memcpy(u.host.data() + tiles_bytes, t.boxes.data(), boxes_bytes);
  u.device = DeviceBytes(u.host.size(), DeviceBytes::Kind::device);
  memcpy_async(u.device.get(), u.host.data(), u.host.size(), stream);
  return tables.emplace(key, std::move(u)).first->second;
}

DeviceCopyBatch::DeviceCopyBatch() = default;
DeviceCopyBatch::~DeviceCopyBatch() = default;
DeviceCopyBatch::DeviceCopyBatch(DeviceCopyBatch&&) noexcept = default;
DeviceCopyBatch& DeviceCopyBatch::operator=(DeviceCopyBatch&&) noexcept = default;

DeviceCopyBatch::DeviceCopyBatch(const std::vector<BoxCopy>& boxes, std::size_t elem_size)
    : impl_(std::make_unique<Impl>()) {
  if (elem_size == 0) throw Error("DeviceCopyBatch: element size 0");
  impl_->elem_size = elem_size;
  for (std::size_t b = 0; b < boxes.size(); ++b) {
    const BoxCopy& c = boxes[b];
    auto where = [&](const std::string& what) {
      return Error("DeviceCopyBatch: box " + std::to_string(b) + ": " + what);
    };
    if (c.src < 0 || c.src >= kMaxBuffers || c.dst < 0 || c.dst >= kMaxBuffers)
      throw where("buffer index outside 0.." + std::to_string(kMaxBuffers - 1));
    if (c.src_at < 0 || c.dst_at < 0) throw where("negative array start");
    detail::BatchInput in;
    try {
      in.walk = detail::walk_of_box(c.src_shape, c.src_offset, c.dst_shape, c.dst_offset, c.extent);
    } catch (const Error& e) {
      throw where(e.what());
    }
    if (in.walk.volume == 0) continue;
    in.walk.src_base += c.src_at;
    in.walk.dst_base += c.dst_at;
    in.src = c.src;
    in.dst = c.dst;
    impl_->src_used[c.src] = impl_->dst_used[c.dst] = true;
    impl_->bytes += in.walk.volume * static_cast<std::int64_t>(elem_size);
    impl_->inputs.push_back(in);
  }
}

bool DeviceCopyBatch::empty() const { return !impl_ || impl_->inputs.empty(); }
std::int64_t DeviceCopyBatch::bytes() const { return impl_ ? impl_->bytes : 0; }

void DeviceCopyBatch::run(std::span<const void* const> srcs, std::span<void* const> dsts,
                          void* stream) const {
  if (empty()) return;
  cuda_detail::BatchArrays a;
  for (int i = 0; i < kMaxBuffers; ++i) {
    const void* s = i < static_cast<int>(srcs.size()) ? srcs[i] : nullptr;
    void* d = i < static_cast<int>(dsts.size()) ? dsts[i] : nullptr;
    if (impl_->src_used[i] && !s)
      throw Error("DeviceCopyBatch::run: source buffer " + std::to_string(i) + " is missing");
    if (impl_->dst_used[i] && !d)
      throw Error("DeviceCopyBatch::run: destination buffer " + std::to_string(i) + " is missing");
    a.src[i] = static_cast<const unsigned char*>(s);
    a.dst[i] = static_cast<unsigned char*>(d);
  }
  const Impl::Uploaded& t = impl_->table_for(a, stream);
  const auto* first_tile = reinterpret_cast<const std::int64_t*>(t.device.get());
  const auto* boxes = reinterpret_cast<const detail::BatchBox*>(t.device.get() + (t.n + 1) * sizeof(std::int64_t));
  cuda_detail::launch_copy_batch(a, first_tile, boxes, t.n, t.tiles, t.index32, stream);
}

}  // namespace reshard
