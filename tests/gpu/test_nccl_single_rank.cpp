// The NCCL backend on one rank and one GPU (NCCL refuses two ranks on one GPU): its group
// operations for every dtype and op (i16's send/recv fallback included) and host-pointer control
// messages; then the executor on device buffers over it, for every public case and strategy
// with the mesh's axes shrunk to size 1, checked against the index fill on the device; then the
// MPI backend given device buffers (pinned staging) on the same plans.
//
// Run under `mpirun -np 1` (CTest does). Without a usable CUDA device it prints why and exits
// with 77 before MPI starts (CTest: skipped).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "reshard/cases.hpp"
#include "reshard/context.hpp"
#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/executor.hpp"
#include "reshard/host_kernels.hpp"
#include "reshard/nccl.hpp"
#include "reshard/synth.hpp"
#include "reshard/workspace.hpp"

using namespace reshard;

int main(int argc, char** argv) {
  std::string why;
  if (!cuda_device_available(&why)) {
    std::printf("SKIPPED: %s\n", why.c_str());
    return 77;
  }
  int provided = 0;  // as `reshard` does: the MPI backend's watchdog thread may call MPI
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rc = 2;
  if (size != 1) {
    std::fprintf(stderr, "test_nccl_single_rank: run it on one rank (got %d)\n", size);
  } else {
    select_local_cuda_device(MPI_COMM_WORLD);
    std::printf("NCCL %s on %s\n", nccl_version().c_str(), cuda_device_name(cuda_current_device()).c_str());
    rc = Catch::Session().run(argc, argv);
  }
  MPI_Finalize();
  return rc;
}

namespace {

struct Stream {
  void* s = stream_create();
  ~Stream() { stream_destroy(s); }
};

template <class T>
DeviceBytes upload(const std::vector<T>& h, void* stream) {
  DeviceBytes d(h.size() * sizeof(T), DeviceBytes::Kind::device);
  memcpy_async(d.get(), h.data(), d.size(), stream);
  return d;
}

template <class T>
std::vector<T> download(const DeviceBytes& d, std::size_t n, void* stream) {
  std::vector<T> h(n);
  memcpy_async(h.data(), d.get(), n * sizeof(T), stream);
  stream_synchronize(stream, "download");
  return h;
}

std::vector<std::byte> download_bytes(const void* d, std::size_t n, void* stream) {
  std::vector<std::byte> h(n);
  memcpy_async(h.data(), d, n, stream);
  stream_synchronize(stream, "download");
  return h;
}

// The case's mesh with every axis of size 1 (one device), the same axis names.
std::string one_device(const std::string& mesh) { return std::regex_replace(mesh, std::regex("=[0-9]+"), "=1"); }

}  // namespace

TEST_CASE("NCCL group operations on one rank", "[nccl]") {
  Stream st;
  const Mesh mesh = Mesh::parse("x=1,y=1");
  auto comm = make_nccl_communicator(MPI_COMM_WORLD, mesh, st.s);
  CHECK(comm->backend() == "nccl");
  CHECK(comm->memory() == Memory::device);
  CHECK(comm->stream() == st.s);
  CHECK(comm->device() == 0);
  CHECK(comm->world().size() == 1);
  CHECK(&comm->group({"x"}) == &comm->group({"x"}));  // cached
  Group& g = comm->group({"x", "y"});
  CHECK(g.size() == 1);
  CHECK(g.rank() == 0);

  const std::vector<float> values{1, 2, 3, 4, 5, 6, 7};
  const auto n = static_cast<std::int64_t>(values.size());
  DeviceBytes src = upload(values, st.s);

  SECTION("allgatherv lands at the segment's offset") {
    DeviceBytes dst = upload(std::vector<float>(n + 3, -1), st.s);
    const Segment seg{3, n};
    g.allgatherv(src.get(), n, dst.get(), {&seg, 1}, DType::f32);
    comm->synchronize();
    std::vector<float> got = download<float>(dst, n + 3, st.s);
    CHECK(std::vector<float>(got.begin(), got.begin() + 3) == std::vector<float>{-1, -1, -1});
    CHECK(std::vector<float>(got.begin() + 3, got.end()) == values);
  }
  SECTION("alltoallv copies the segment to itself") {
    DeviceBytes dst = upload(std::vector<float>(n, 0), st.s);
    const Segment s{2, 4}, r{1, 4};
    g.alltoallv(src.get(), {&s, 1}, dst.get(), {&r, 1}, DType::f32);
    comm->synchronize();
    CHECK(download<float>(dst, n, st.s) == std::vector<float>{0, 3, 4, 5, 6, 0, 0});
  }
  SECTION("reduce_scatter and allreduce, every dtype and op, i16 through the fallback") {
    for (DType t : kAllDTypes)
      for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod}) {
        INFO(name_of(t) << " op " << static_cast<int>(op));
        const std::size_t elem = size_of(t);
        std::vector<std::byte> h(static_cast<std::size_t>(n) * elem);
        for (std::int64_t i = 0; i < n; ++i) store_as(h.data(), i, t, static_cast<double>(i + 1));
        DeviceBytes a = upload(h, st.s), b(h.size(), DeviceBytes::Kind::device), c(h.size(), DeviceBytes::Kind::device);
        const std::int64_t counts[1] = {n};
        g.reduce_scatter(a.get(), b.get(), counts, t, op);
        comm->world().allreduce(a.get(), c.get(), n, t, op);
        comm->synchronize();
        CHECK(download<std::byte>(b, h.size(), st.s) == h);  // one member: the reduction is the input
        CHECK(download<std::byte>(c, h.size(), st.s) == h);
        comm->world().allreduce(a.get(), a.get(), n, t, op);  // in place
        comm->synchronize();
        CHECK(download<std::byte>(a, h.size(), st.s) == h);
      }
  }
  SECTION("host pointers travel through the bounce buffer (control messages)") {
    std::int64_t mine[3] = {5, -7, 9}, out[3] = {0, 0, 0};
    comm->world().allreduce(mine, out, 3, DType::i64, ReduceOp::min);
    CHECK(std::vector<std::int64_t>(out, out + 3) == std::vector<std::int64_t>{5, -7, 9});
    std::int64_t gathered[4] = {-1, -1, -1, -1};
    const Segment seg{1, 3};
    g.allgatherv(mine, 3, gathered, {&seg, 1}, DType::i64);
    CHECK(std::vector<std::int64_t>(gathered, gathered + 4) == std::vector<std::int64_t>{-1, 5, -7, 9});
    CHECK_NOTHROW(check_agreement(comm->world(), "the test", 42, "summary"));
    CHECK_THROWS_AS(check_agreement(comm->world(), "the test", 42, "summary", "a local error"), MismatchError);
  }
  SECTION("exchange, barrier, and what is refused") {
    CHECK_NOTHROW(comm->world().exchange({}, {}, DType::f32));
    const SendMsg self{0, src.get(), n};
    CHECK_THROWS_AS(comm->world().exchange({&self, 1}, {}, DType::f32), Error);
    CHECK_NOTHROW(comm->world().barrier());
    CHECK_NOTHROW(g.barrier());
    CHECK_FALSE(comm->aborted());
  }
}

TEST_CASE("the executor refuses what does not fit the NCCL backend", "[nccl]") {
  Stream st, other;
  const Mesh mesh = Mesh::parse("x=1");
  auto comm = make_nccl_communicator(MPI_COMM_WORLD, mesh, st.s);
  CHECK_THROWS_AS(Executor(*comm), Error);  // host memory on a device backend
  ExecOptions o;
  o.memory = Memory::device;
  o.stream = other.s;
  CHECK_THROWS_AS(Executor(*comm, o), Error);  // not the communicator's stream
  o.stream = nullptr;
  Executor exec(*comm, o);
  const Type src = Type::parse("f32[8{x},4]", mesh), dst = Type::parse("f32[8,4{x}]", mesh);
  const Plan plan = synthesize(mesh, src, dst);
  std::vector<float> host_in(32), host_out(32);
  CHECK_THROWS_AS(exec.execute(plan, host_in.data(), 128, host_out.data(), 128), MismatchError);
}

namespace {

// Fills, executes, checks on the device; the input must be untouched. Returns mismatches.
std::int64_t run_on_device(Executor& exec, const Plan& plan, int device, void* stream, bool& input_kept) {
  const Mesh& m = plan.mesh;
  DeviceBytes in(static_cast<std::size_t>(plan.src.local_bytes(m, device)), DeviceBytes::Kind::device);
  DeviceBytes out(static_cast<std::size_t>(plan.dst.local_bytes(m, device)), DeviceBytes::Kind::device);
  device_fill_index(in.get(), plan.src, m, device, stream);
  memset_async(out.get(), 0xff, out.size(), stream);
  const std::vector<std::byte> before = download_bytes(in.get(), in.size(), stream);
  exec.execute(plan, in.get(), in.size(), out.get(), out.size());
  exec.communicator().synchronize();
  input_kept = download_bytes(in.get(), in.size(), stream) == before;
  // One device: a pending reduction's group is this device alone, so its logical value is its array.
  return device_check_index(out.get(), plan.dst, m, device, stream);
}

}  // namespace

TEST_CASE("public cases on a one-device mesh run on the NCCL backend", "[nccl][cases]") {
  Stream st;
  int plans = 0, steps = 0;
  for (const Case& c : read_cases(RESHARD_CASES_DIR "/public.txt")) {
    const Mesh mesh = Mesh::parse(one_device(c.mesh));
    auto comm = make_nccl_communicator(MPI_COMM_WORLD, mesh, st.s);
    const Type src = Type::parse(c.from, mesh), dst = Type::parse(c.to, mesh);
    for (bool p2p : {false, true}) {
      ExecOptions o;
      o.memory = Memory::device;
      o.point_to_point_only = p2p;
      Executor exec(*comm, o);
      for (Strategy s : {Strategy::reshard, Strategy::naive, Strategy::greedy_per_axis, Strategy::exchange}) {
        SynthOptions so;
        so.strategy = s;
        const Plan plan = synthesize(mesh, src, dst, so);
        INFO(c.name << " on " << mesh << " (" << name_of(s) << (p2p ? ", point-to-point" : "") << ")\n" << plan);
        bool kept = false;
        CHECK(run_on_device(exec, plan, 0, st.s, kept) == 0);
        CHECK(kept);
        // NCCL moves no strided box in place: the packing rules of workspace.hpp.
        CHECK(exec.workspace_bytes(plan) == device_workspace_bytes(plan, 0, StagingRules{false, p2p}));
        ++plans;
        steps += static_cast<int>(plan.steps.size());
      }
    }
  }
  CHECK(plans > 0);
  WARN(plans << " plans, " << steps << " steps on one device");
}

TEST_CASE("the MPI backend given device buffers stages through pinned memory", "[mpi][cases]") {
  Stream st;
  for (const Case& c : read_cases(RESHARD_CASES_DIR "/public.txt")) {
    const Mesh mesh = Mesh::parse(one_device(c.mesh));
    ExecOptions o;
    o.memory = Memory::device;
    o.stream = st.s;
    Context ctx(mesh, MPI_COMM_WORLD, {}, o);
    const Type src = Type::parse(c.from, mesh), dst = Type::parse(c.to, mesh);
    for (Strategy s : {Strategy::reshard, Strategy::naive, Strategy::exchange}) {
      SynthOptions so;
      so.strategy = s;
      const Plan plan = synthesize(mesh, src, dst, so);
      INFO(c.name << " on " << mesh << " (" << name_of(s) << ")\n" << plan);
      bool kept = false;
      CHECK(run_on_device(*ctx.executor(), plan, 0, st.s, kept) == 0);
      CHECK(kept);
    }
  }
}
