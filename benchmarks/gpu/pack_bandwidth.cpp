// Pack/unpack bandwidth of the device kernels against cudaMemcpy D2D of the same bytes.
//
// Two kinds of rows, both on a [rows, cols] f32 matrix split along its columns:
//   box:   device_copy_box of one block (split 4 ways: device 1's [rows, cols/4] box) out to a
//          dense buffer (pack) and back (unpack);
//   step8: what an all-to-all step does, as the executor runs it: the blocks for 8 peers
//          packed back to back into staging by one DeviceCopyBatch launch (the whole matrix
//          moves), and unpacked from staging by another.
// Two row lengths each: wide rows (8 KiB runs) and narrow ones (256 B runs). Every measured
// kernel's result is checked with the index fill, as nccl-tests does.
//
//   pack_bandwidth [--sizes-mib 64,1024] [--iters N]
//
// GB/s is payload bytes (the packed size) over the median time of one call; the memory
// traffic is twice that (read + write) for all three. Exits 77 without a GPU.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "reshard/device_kernels.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

using namespace reshard;
using Shape = std::vector<std::int64_t>;

namespace {

void cuda_or_die(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "pack_bandwidth: %s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(std::size_t bytes) { cuda_or_die(cudaMalloc(&p, bytes), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

// Median seconds per call of `op` over `iters` timed calls, after two warm-up calls.
template <typename Op>
double median_seconds(int iters, cudaStream_t stream, Op&& op) {
  cudaEvent_t start, stop;
  cuda_or_die(cudaEventCreate(&start), "cudaEventCreate");
  cuda_or_die(cudaEventCreate(&stop), "cudaEventCreate");
  op();
  op();
  std::vector<double> times;
  for (int i = 0; i < iters; ++i) {
    cuda_or_die(cudaEventRecord(start, stream), "cudaEventRecord");
    op();
    cuda_or_die(cudaEventRecord(stop, stream), "cudaEventRecord");
    cuda_or_die(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    cuda_or_die(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(ms * 1e-3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Result {
  double pack_s, unpack_s, memcpy_s;
  bool verified;
};

// One layout: packed bytes `packed`, rows of `cols` f32 of which the box takes cols/4.
Result run_case(std::int64_t packed, std::int64_t cols, int iters, cudaStream_t stream) {
  const std::int64_t part = cols / 4, rows = packed / (part * 4);
  const std::size_t full_bytes = static_cast<std::size_t>(rows * cols) * 4;
  const std::size_t box_bytes = static_cast<std::size_t>(rows * part) * 4;
  DeviceBuffer src(full_bytes), dst(full_bytes), buf(box_bytes), zeros(box_bytes);

  // Logical array: f32[rows, cols] holding its linear index; the box is device 1's block of
  // f32[rows, cols{x}] on x=4, so the index check of that type verifies a pack.
  const Mesh one = Mesh::parse("x=1"), four = Mesh::parse("x=4");
  const std::string dims = std::to_string(rows) + "," + std::to_string(cols);
  const Type whole = Type::parse("f32[" + dims + "]", one);
  const Type split = Type::parse("f32[" + std::to_string(rows) + "," + std::to_string(cols) +
                                     "{x}]",
                                 four);
  device_fill_index(src.p, whole, one, 0, stream);
  device_fill_index(dst.p, whole, one, 0, stream);
  cuda_or_die(cudaMemsetAsync(zeros.p, 0, box_bytes, stream), "cudaMemsetAsync");

  const Shape full{rows, cols}, box{rows, part}, at{0, part}, origin{0, 0};
  auto pack = [&] { device_copy_box(src.p, full, at, buf.p, box, origin, box, 4, stream); };
  auto unpack = [&] { device_copy_box(buf.p, box, origin, dst.p, full, at, box, 4, stream); };

  Result r{};
  r.pack_s = median_seconds(iters, stream, pack);
  bool ok = device_check_index(buf.p, split, four, 1, stream) == 0;
  // Unpack zeros first: the check must then see exactly the box wrong, nothing else.
  device_copy_box(zeros.p, box, origin, dst.p, full, at, box, 4, stream);
  ok = ok && device_check_index(dst.p, whole, one, 0, stream) == rows * part;
  r.unpack_s = median_seconds(iters, stream, unpack);
  ok = ok && device_check_index(dst.p, whole, one, 0, stream) == 0;
  r.memcpy_s = median_seconds(iters, stream, [&] {
    cuda_or_die(cudaMemcpyAsync(zeros.p, buf.p, box_bytes, cudaMemcpyDeviceToDevice, stream),
                "cudaMemcpyAsync");
  });
  r.verified = ok;
  return r;
}

// The step8 rows: `packed` bytes in all, runs of `row_bytes` per peer; the matrix is
// f32[rows, 8 * row_bytes / 4] split 8 ways along its columns.
Result run_step_case(std::int64_t packed, std::int64_t row_bytes, int iters, cudaStream_t stream) {
  constexpr int kPeers = 8;
  const std::int64_t part = row_bytes / 4, cols = part * kPeers, rows = packed / (cols * 4);
  const std::size_t bytes = static_cast<std::size_t>(rows * cols) * 4;
  DeviceBuffer src(bytes), stage(bytes), dst(bytes);

  const Mesh one = Mesh::parse("x=1"), peers = Mesh::parse("x=8");
  const Type whole = Type::parse("f32[" + std::to_string(rows) + "," + std::to_string(cols) + "]", one);
  const Type split = Type::parse("f32[" + std::to_string(rows) + "," + std::to_string(cols) + "{x}]", peers);
  device_fill_index(src.p, whole, one, 0, stream);

  const Shape full{rows, cols}, box{rows, part}, origin{0, 0};
  std::vector<BoxCopy> pack, unpack;
  for (int p = 0; p < kPeers; ++p) {
    const Shape at{0, p * part};
    pack.push_back({0, 0, full, at, 0, box, origin, p * rows * part, box});
    unpack.push_back({0, 0, box, origin, p * rows * part, full, at, 0, box});
  }
  const DeviceCopyBatch pack_batch(pack, 4), unpack_batch(unpack, 4);
  const void* pack_src[] = {src.p};
  void* pack_dst[] = {stage.p};
  const void* unpack_src[] = {stage.p};
  void* unpack_dst[] = {dst.p};

  Result r{};
  r.pack_s = median_seconds(iters, stream, [&] { pack_batch.run(pack_src, pack_dst, stream); });
  bool ok = true;
  for (int p = 0; p < kPeers; ++p)
    ok = ok && device_check_index(static_cast<char*>(stage.p) + p * rows * part * 4, split, peers, p, stream) == 0;
  cuda_or_die(cudaMemsetAsync(dst.p, 0, bytes, stream), "cudaMemsetAsync");
  r.unpack_s = median_seconds(iters, stream, [&] { unpack_batch.run(unpack_src, unpack_dst, stream); });
  ok = ok && device_check_index(dst.p, whole, one, 0, stream) == 0;
  r.memcpy_s = median_seconds(iters, stream, [&] {
    cuda_or_die(cudaMemcpyAsync(dst.p, stage.p, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
  });
  r.verified = ok;
  return r;
}

std::vector<std::int64_t> parse_list(const char* text) {
  std::vector<std::int64_t> out;
  std::string s(text);
  for (std::size_t pos = 0; pos <= s.size();) {
    const std::size_t comma = std::min(s.find(',', pos), s.size());
    out.push_back(std::stoll(s.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::int64_t> sizes_mib{64, 1024};
  int iters = 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--sizes-mib" && i + 1 < argc) sizes_mib = parse_list(argv[++i]);
    else if (a == "--iters" && i + 1 < argc) iters = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: pack_bandwidth [--sizes-mib 64,1024] [--iters N]\n");
      return 2;
    }
  }
  std::string why;
  if (!cuda_device_available(&why)) {
    std::printf("SKIPPED: %s\n", why.c_str());
    return 77;
  }
  cudaDeviceProp prop{};
  cuda_or_die(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("device: %s\n", prop.name);
  std::printf("GB/s = packed bytes / median time per call (memory traffic is 2x that)\n");
  std::printf("%-6s %9s %8s %10s %12s %12s %12s %8s %8s %s\n", "kind", "packed", "row_B", "rows",
              "pack_GB/s", "unpack_GB/s", "memcpy_GB/s", "pack/mc", "unpk/mc", "verified");
  cudaStream_t stream;
  cuda_or_die(cudaStreamCreate(&stream), "cudaStreamCreate");
  bool all_ok = true;
  for (std::int64_t mib : sizes_mib) {
    const std::int64_t packed = mib << 20;
    for (const bool step : {false, true})
      for (std::int64_t row_bytes : {std::int64_t{8192}, std::int64_t{256}}) {
        // box rows: cols = row_bytes (a quarter of the f32 columns is row_bytes bytes).
        const Result r = step ? run_step_case(packed, row_bytes, iters, stream)
                              : run_case(packed, row_bytes, iters, stream);
        const double gb = static_cast<double>(packed) * 1e-9;
        std::printf("%-6s %6lldMiB %8lld %10lld %12.1f %12.1f %12.1f %8.3f %8.3f %s\n", step ? "step8" : "box",
                    static_cast<long long>(mib), static_cast<long long>(row_bytes),
                    static_cast<long long>(packed / row_bytes), gb / r.pack_s, gb / r.unpack_s, gb / r.memcpy_s,
                    r.memcpy_s / r.pack_s, r.memcpy_s / r.unpack_s, r.verified ? "yes" : "NO");
        all_ok = all_ok && r.verified;
      }
  }
  cudaStreamDestroy(stream);
  return all_ok ? 0 : 1;
}
