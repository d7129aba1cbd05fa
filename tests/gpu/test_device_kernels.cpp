// Every CUDA kernel against its host twin on random shapes, every dtype and op: the host
// kernels are the oracle (they are tested against naive references in test_host_kernels.cpp), and
// host and device are meant to agree bit for bit.
//
// Without a usable CUDA device this program prints why and exits with 77, which CTest turns
// into "skipped" (SKIP_RETURN_CODE 77); Catch2 v2 has no SKIP of its own.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "reshard/device_kernels.hpp"
#include "reshard/host_kernels.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

using namespace reshard;
using Shape = std::vector<std::int64_t>;

int main(int argc, char* argv[]) {
  std::string why;
  if (!cuda_device_available(&why)) {
    std::printf("SKIPPED: %s\n", why.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}

namespace {

void cuda_ok(cudaError_t err, const char* what) {
  if (err != cudaSuccess) FAIL(what << ": " << cudaGetErrorString(err));
}

// A device allocation, freed on scope exit. `offset` shifts the usable pointer by that many
// bytes from a 256-byte aligned base, to exercise the kernels' alignment choices.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes, std::size_t offset = 0) : bytes_(bytes) {
    cuda_ok(cudaMalloc(&base_, bytes + offset + 1), "cudaMalloc");
    ptr_ = static_cast<unsigned char*>(base_) + offset;
  }
  ~DeviceBuffer() { cudaFree(base_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return ptr_; }
  void upload(const std::vector<unsigned char>& h) {
    REQUIRE(h.size() == bytes_);
    cuda_ok(cudaMemcpy(ptr_, h.data(), bytes_, cudaMemcpyHostToDevice), "upload");
  }
  std::vector<unsigned char> download() const {
    std::vector<unsigned char> h(bytes_);
    cuda_ok(cudaMemcpy(h.data(), ptr_, bytes_, cudaMemcpyDeviceToHost), "download");
    return h;
  }

 private:
  void* base_ = nullptr;
  unsigned char* ptr_ = nullptr;
  std::size_t bytes_;
};

std::int64_t volume(const Shape& s) {
  std::int64_t v = 1;
  for (auto x : s) v *= x;
  return v;
}

struct BoxCase {
  Shape src_shape, src_off, dst_shape, dst_off, ext;
};

// Random boxes of rank 0..5; every tenth one is big, so that grid-stride loops wrap and the
// 16-byte path meets long rows.
BoxCase random_box(std::mt19937_64& rng, bool big) {
  auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  BoxCase c;
  if (big) {  // the dim-1 pack of a matrix: a column block at a column offset
    const std::int64_t rows = pick(500, 2000), cols = 4 * pick(16, 400);
    const std::int64_t part = pick(0, 3);
    c.src_shape = {rows, cols};
    c.src_off = {0, part * cols / 4};
    c.ext = {rows, cols / 4};
    c.dst_shape = {rows, cols / 4};
    c.dst_off = {0, 0};
    if (pick(0, 1)) {  // or the unpack: packed block into the matrix
      std::swap(c.src_shape, c.dst_shape);
      std::swap(c.src_off, c.dst_off);
    }
    return c;
  }
  const int rank = static_cast<int>(pick(0, 5));
  for (int d = 0; d < rank; ++d) {
    const std::int64_t e = pick(0, 9) == 0 ? pick(0, 1) : pick(1, 9);
    const std::int64_t sm = pick(0, 2) == 0 ? 0 : pick(1, 4);
    const std::int64_t dm = pick(0, 2) == 0 ? 0 : pick(1, 4);
    c.ext.push_back(e);
    c.src_shape.push_back(e + sm);
    c.dst_shape.push_back(e + dm);
    c.src_off.push_back(pick(0, sm));
    c.dst_off.push_back(pick(0, dm));
  }
  return c;
}

std::vector<unsigned char> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<unsigned char> v(n);
  for (std::size_t k = 0; k < n; k += 8) {
    const std::uint64_t bits = rng();
    std::memcpy(v.data() + k, &bits, std::min<std::size_t>(8, n - k));
  }
  return v;
}

std::vector<unsigned char> random_values(std::mt19937_64& rng, DType t, std::int64_t n) {
  const std::size_t es = size_of(t);
  std::vector<unsigned char> v(static_cast<std::size_t>(n) * es);
  std::uniform_real_distribution<double> real(-8.0, 8.0);
  for (std::int64_t k = 0; k < n; ++k) {
    if (is_float(t)) {
      double x = rng() % 3 == 0 ? std::round(real(rng)) : real(rng);
      if (x == 0) x = 0.0;  // no -0: which zero fmax/fmin return is not specified
      store_as(v.data(), k, t, x);
    } else {
      const std::uint64_t bits = rng();
      std::memcpy(v.data() + k * es, &bits, es);
    }
  }
  return v;
}

// Alignment shifts: 0 keeps 16-byte alignment; the others force narrower units.
std::size_t random_shift(std::mt19937_64& rng, std::size_t es) {
  static const std::size_t shifts[] = {0, 0, 0, 1, 2, 4, 8};
  return shifts[rng() % 7] * es;
}

constexpr ReduceOp kOps[] = {ReduceOp::none, ReduceOp::sum, ReduceOp::max, ReduceOp::min,
                             ReduceOp::prod};

}  // namespace

TEST_CASE("device_copy_box matches copy_box", "[gpu][copy]") {
  std::mt19937_64 rng(1);
  const std::size_t sizes[] = {1, 2, 4, 8, 16, 3};
  for (int it = 0; it < 600; ++it) {
    const BoxCase c = random_box(rng, it % 10 == 9);
    const std::size_t es = sizes[it % 6];
    const auto src = random_bytes(rng, static_cast<std::size_t>(volume(c.src_shape)) * es);
    auto dst = random_bytes(rng, static_cast<std::size_t>(volume(c.dst_shape)) * es);
    DeviceBuffer dsrc(src.size(), random_shift(rng, es)), ddst(dst.size(), random_shift(rng, es));
    dsrc.upload(src);
    ddst.upload(dst);
    copy_box(src.data(), c.src_shape, c.src_off, dst.data(), c.dst_shape, c.dst_off, c.ext, es);
    device_copy_box(dsrc.get(), c.src_shape, c.src_off, ddst.get(), c.dst_shape, c.dst_off,
                    c.ext, es, nullptr);
    cuda_ok(cudaDeviceSynchronize(), "device_copy_box");
    INFO("iteration " << it << " elem " << es << " rank " << c.ext.size());
    REQUIRE(ddst.download() == dst);
  }
}

// The pack side of a step (peers' boxes back to back in staging, the kept box to the out-block)
// and its unpack side, each as one DeviceCopyBatch launch, against copy_box per box. Each batch
// runs twice, on buffers of different alignment, so both the cached and a second table are used.
TEST_CASE("DeviceCopyBatch matches copy_box per box", "[gpu][copy][batch]") {
  std::mt19937_64 rng(11);
  auto pick = [&](std::int64_t lo, std::int64_t hi) {
    return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
  };
  const std::size_t sizes[] = {1, 2, 4, 8, 16, 3};
  for (int it = 0; it < 300; ++it) {
    const std::size_t es = sizes[it % 6];
    const int rank = static_cast<int>(pick(1, 3));
    Shape block;
    for (int d = 0; d < rank; ++d) block.push_back(d == rank - 1 && pick(0, 3) == 0 ? pick(200, 5000) : pick(1, 12));
    std::vector<BoxCopy> pack, unpack;
    std::int64_t stage = 0;
    const int peers = static_cast<int>(pick(0, 9));
    for (int p = 0; p <= peers; ++p) {
      Shape off, ext;
      for (int d = 0; d < rank; ++d) {
        off.push_back(pick(0, block[d] - 1));
        ext.push_back(pick(0, 12) == 0 ? 0 : pick(1, block[d] - off.back()));
      }
      const Shape zero(rank, 0);
      if (p == peers) {  // the kept box: in-block to out-block
        pack.push_back({0, 1, block, off, 0, block, off, 0, ext});
        continue;
      }
      pack.push_back({0, 0, block, off, 0, ext, zero, stage, ext});
      unpack.push_back({0, 0, ext, zero, stage, block, off, 0, ext});
      stage += volume(ext);
    }
    // Unpacked boxes must not overlap: keep only the first of any two that do.
    std::vector<BoxCopy> disjoint;
    for (const BoxCopy& c : unpack) {
      bool clash = false;
      for (const BoxCopy& o : disjoint) {
        bool meet = volume(c.extent) > 0 && volume(o.extent) > 0;
        for (int d = 0; d < rank && meet; ++d)
          meet = c.dst_offset[d] < o.dst_offset[d] + o.extent[d] && o.dst_offset[d] < c.dst_offset[d] + c.extent[d];
        clash = clash || meet;
      }
      if (!clash) disjoint.push_back(c);
    }
    const DeviceCopyBatch pack_batch(pack, es), unpack_batch(disjoint, es);
    const auto in = random_bytes(rng, static_cast<std::size_t>(volume(block)) * es);
    for (int round = 0; round < 2; ++round) {
      auto staging = random_bytes(rng, static_cast<std::size_t>(stage) * es);
      auto out = random_bytes(rng, static_cast<std::size_t>(volume(block)) * es);
      DeviceBuffer din(in.size(), random_shift(rng, es)), dstage(staging.size(), random_shift(rng, es)),
          dout(out.size(), random_shift(rng, es));
      din.upload(in);
      dstage.upload(staging);
      dout.upload(out);
      auto run_host = [&](const std::vector<BoxCopy>& copies, const unsigned char* src, unsigned char* const* dst) {
        for (const BoxCopy& c : copies)
          copy_box(src + c.src_at * es, c.src_shape, c.src_offset, dst[c.dst] + c.dst_at * es, c.dst_shape,
                   c.dst_offset, c.extent, es);
      };
      unsigned char* pack_dst[] = {staging.data(), out.data()};
      run_host(pack, in.data(), pack_dst);
      const void* psrc[] = {din.get()};
      void* pdst[] = {dstage.get(), dout.get()};
      pack_batch.run(psrc, pdst, nullptr);
      cuda_ok(cudaDeviceSynchronize(), "DeviceCopyBatch pack");
      INFO("iteration " << it << " round " << round << " elem " << es << ", " << pack.size() << " boxes");
      REQUIRE(dstage.download() == staging);
      REQUIRE(dout.download() == out);
      unsigned char* unpack_dst[] = {out.data()};
      run_host(disjoint, staging.data(), unpack_dst);
      const void* usrc[] = {dstage.get()};
      void* udst[] = {dout.get()};
      unpack_batch.run(usrc, udst, nullptr);
      cuda_ok(cudaDeviceSynchronize(), "DeviceCopyBatch unpack");
      REQUIRE(dout.download() == out);
    }
  }
}

TEST_CASE("DeviceCopyBatch refuses bad boxes and missing buffers", "[gpu][batch]") {
  const Shape a{4, 4}, at{2, 0}, ext{3, 4}, zero{0, 0};
  CHECK_THROWS_WITH(DeviceCopyBatch({{0, 0, a, zero, 0, a, zero, 0, a}, {0, 0, a, at, 0, a, zero, 0, ext}}, 4),
                    Catch::Contains("box 1") && Catch::Contains("does not fit"));
  CHECK_THROWS_WITH(DeviceCopyBatch({{0, 4, a, zero, 0, a, zero, 0, a}}, 4), Catch::Contains("buffer index"));
  const DeviceCopyBatch b({{0, 1, a, zero, 0, a, zero, 0, a}}, 4);
  DeviceBuffer x(64), y(64);
  const void* src[] = {x.get()};
  void* only_first[] = {y.get()};
  CHECK_THROWS_WITH(b.run(src, only_first, nullptr), Catch::Contains("destination buffer 1"));
  CHECK(DeviceCopyBatch().empty());
  DeviceCopyBatch().run({}, {}, nullptr);  // an empty batch launches nothing
}

TEST_CASE("device_reduce_box matches reduce_box for every dtype and op", "[gpu][reduce]") {
  std::mt19937_64 rng(2);
  cudaStream_t stream;
  cuda_ok(cudaStreamCreate(&stream), "cudaStreamCreate");
  for (DType t : kAllDTypes) {
    for (ReduceOp op : kOps) {
      for (int it = 0; it < 40; ++it) {
        const BoxCase c = random_box(rng, it % 10 == 9);
        const std::size_t es = size_of(t);
        const auto src = random_values(rng, t, volume(c.src_shape));
        auto dst = random_values(rng, t, volume(c.dst_shape));
        DeviceBuffer dsrc(src.size(), random_shift(rng, es));
        DeviceBuffer ddst(dst.size(), random_shift(rng, es));
        dsrc.upload(src);
        ddst.upload(dst);
        reduce_box(src.data(), c.src_shape, c.src_off, dst.data(), c.dst_shape, c.dst_off, c.ext,
                   t, op);
        device_reduce_box(dsrc.get(), c.src_shape, c.src_off, ddst.get(), c.dst_shape,
                          c.dst_off, c.ext, t, op, stream);
        cuda_ok(cudaStreamSynchronize(stream), "device_reduce_box");
        INFO(name_of(t) << " " << name_of(op) << " iteration " << it);
        REQUIRE(ddst.download() == dst);
      }
    }
  }
  cudaStreamDestroy(stream);
}

TEST_CASE("device_reduce_into and device_fill_identity match the host", "[gpu][reduce]") {
  std::mt19937_64 rng(3);
  for (DType t : kAllDTypes) {
    for (ReduceOp op : kOps) {
      for (std::int64_t n : {std::int64_t{1}, std::int64_t{7}, std::int64_t{1000},
                             std::int64_t{1} << 20, (std::int64_t{1} << 20) + 3}) {
        INFO(name_of(t) << " " << name_of(op) << " n " << n);
        const std::size_t es = size_of(t);
        const auto in = random_values(rng, t, n);
        auto acc = random_values(rng, t, n);
        DeviceBuffer din(in.size(), random_shift(rng, es)), dacc(acc.size(), random_shift(rng, es));
        din.upload(in);
        dacc.upload(acc);
        reduce_into(acc.data(), in.data(), n, t, op);
        device_reduce_into(dacc.get(), din.get(), n, t, op, nullptr);
        cuda_ok(cudaDeviceSynchronize(), "device_reduce_into");
        REQUIRE(dacc.download() == acc);

        fill_identity(acc.data(), n, t, op);
        device_fill_identity(dacc.get(), n, t, op, nullptr);
        cuda_ok(cudaDeviceSynchronize(), "device_fill_identity");
        REQUIRE(dacc.download() == acc);
      }
    }
  }
  // Zero elements launch nothing and touch nothing.
  device_fill_identity(nullptr, 0, DType::f32, ReduceOp::sum, nullptr);
  device_reduce_into(nullptr, nullptr, 0, DType::f32, ReduceOp::sum, nullptr);
  cuda_ok(cudaDeviceSynchronize(), "empty calls");
}

TEST_CASE("device_reduce_slots folds k slots as k reduce_into calls do", "[gpu][reduce]") {
  std::mt19937_64 rng(4);
  for (DType t : kAllDTypes) {
    for (ReduceOp op : kOps) {
      if (op == ReduceOp::none) continue;
      for (std::int64_t n : {std::int64_t{1}, std::int64_t{13}, std::int64_t{4096}, (std::int64_t{1} << 18) + 5}) {
        for (int k : {1, 2, 3, 8}) {
          INFO(name_of(t) << " " << name_of(op) << " n " << n << " k " << k);
          const std::size_t es = size_of(t);
          const auto slots = random_values(rng, t, n * k);
          std::vector<unsigned char> want(slots.begin(), slots.begin() + static_cast<std::ptrdiff_t>(n * es));
          for (int s = 1; s < k; ++s) reduce_into(want.data(), slots.data() + s * n * es, n, t, op);
          DeviceBuffer dslots(slots.size(), random_shift(rng, es)), dout(want.size(), random_shift(rng, es));
          dslots.upload(slots);
          device_reduce_slots(dout.get(), dslots.get(), n, k, t, op, nullptr);
          cuda_ok(cudaDeviceSynchronize(), "device_reduce_slots");
          REQUIRE(dout.download() == want);
          // In place over slot 0.
          device_reduce_slots(dslots.get(), dslots.get(), n, k, t, op, nullptr);
          cuda_ok(cudaDeviceSynchronize(), "device_reduce_slots in place");
          const auto got = dslots.download();
          REQUIRE(std::vector<unsigned char>(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n * es)) == want);
        }
      }
    }
  }
  CHECK_THROWS_WITH(device_reduce_slots(nullptr, nullptr, 4, 0, DType::f32, ReduceOp::sum, nullptr),
                    Catch::Contains("no slots"));
  CHECK_THROWS_WITH(device_reduce_slots(nullptr, nullptr, 4, 2, DType::f32, ReduceOp::none, nullptr),
                    Catch::Contains("needs an op"));
}

TEST_CASE("device_fill_index and device_check_index match the host", "[gpu][index]") {
  const Mesh mesh = Mesh::parse("x=2,y=3,z=2");
  const char* types[] = {
      "f32[10{x,y},7]",       "f32[12{y},5{x}] sum{z}", "i64[3,4,5] max{x,y}", "u8[400{x},9{y}]",
      "i8[300{y}] min{z}",    "f16[170{x},33{y}]",      "bf16[9,8{y,x}] prod{z}",
      "i16[5{x},2,3{y}]",     "f64[]",                  "i32[2{y},1{x}] sum{z}",
      "f16[64{z},4] sum{x,y}", "f32[1000{y},300{x,z}]",
  };
  for (const char* text : types) {
    INFO(text);
    const Type type = Type::parse(text, mesh);
    for (int dev = 0; dev < mesh.num_devices(); ++dev) {
      const std::int64_t n = type.local_elements(mesh, dev);
      const std::size_t bytes = static_cast<std::size_t>(n) * size_of(type.dtype);
      std::vector<unsigned char> host(bytes, 0xAB);
      fill_index(host.data(), type, mesh, dev);
      DeviceBuffer d(bytes);
      device_fill_index(d.get(), type, mesh, dev, nullptr);
      REQUIRE(d.download() == host);
      if (type.op != ReduceOp::none) continue;  // a partial value is not the index
      CHECK(device_check_index(d.get(), type, mesh, dev, nullptr) == 0);
      if (n == 0) continue;
      // Corrupt up to three elements: the device count must equal the host count.
      for (int k = 0; k < 3 && k < n; ++k) {
        const std::int64_t e = (n - 1) * k / 2;
        store_as(host.data(), e, type.dtype, load_as(host.data(), e, type.dtype) + 5);
      }
      d.upload(host);
      const std::int64_t expected = check_index(host.data(), type, mesh, dev);
      CHECK(expected > 0);
      CHECK(device_check_index(d.get(), type, mesh, dev, nullptr) == expected);
    }
  }
}

TEST_CASE("64-bit indexing: a box of more than 2^31 units", "[gpu][large]") {
  // Odd pointers force 1-byte units, so 2^31 + 1000 bytes is past the 32-bit index path of
  // the fill, the copy and the check alike.
  const std::int64_t n = (std::int64_t{1} << 31) + 1000;
  std::size_t free_bytes = 0, total_bytes = 0;
  cuda_ok(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  if (free_bytes < 2 * static_cast<std::size_t>(n) + (std::size_t{1} << 28)) {
    WARN("not enough device memory for the 64-bit indexing test; skipped");
    return;
  }
  const Mesh mesh = Mesh::parse("x=1");
  const Type type = Type::parse("u8[" + std::to_string(n) + "]", mesh);
  DeviceBuffer src(static_cast<std::size_t>(n), 1), dst(static_cast<std::size_t>(n), 3);
  device_fill_index(src.get(), type, mesh, 0, nullptr);
  cuda_ok(cudaMemset(dst.get(), 0, static_cast<std::size_t>(n)), "cudaMemset");
  const Shape shape{n}, zero{0};
  device_copy_box(src.get(), shape, zero, dst.get(), shape, zero, shape, 1, nullptr);
  CHECK(device_check_index(dst.get(), type, mesh, 0, nullptr) == 0);
  // The tail really was written (a 32-bit wrap would leave it zero).
  unsigned char tail[4];
  cuda_ok(cudaMemcpy(tail, static_cast<unsigned char*>(dst.get()) + n - 4, 4,
                     cudaMemcpyDeviceToHost),
          "tail");
  for (int k = 0; k < 4; ++k) CHECK(tail[k] == static_cast<unsigned char>(n - 4 + k));
}
