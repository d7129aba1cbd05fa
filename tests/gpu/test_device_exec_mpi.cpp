// Device execution across MPI ranks: every public case whose mesh fits the ranks, on device
// buffers, through the MPI backend (Open MPI here is not CUDA-aware, so every message is staged
// through pinned host memory), with every strategy and with point-to-point only. All ranks may
// share one GPU (ranks use the node-local rank modulo the devices): unlike NCCL, MPI staging
// does not care. Source filled and target checked on the device (device_fill_index,
// device_check_index; a pending reduction is checked on the host after its group's reduction).
//
// Run under mpirun (CTest: 4 and 8 ranks), with tests/mpi/mpi_main.cpp as main. Without a usable
// CUDA device every rank exits with 77 before MPI starts (CTest: skipped).
#include <catch2/catch.hpp>
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "reshard/cases.hpp"
#include "reshard/context.hpp"
#include "reshard/device_kernels.hpp"
#include "reshard/device_memory.hpp"
#include "reshard/synth.hpp"
#include "reshard/workspace.hpp"

using namespace reshard;

namespace {

// Before main (tests/mpi/mpi_main.cpp's, which starts MPI and reports rank 0's results): without
// a usable CUDA device, say why and exit with 77 on every rank (CTest: skipped).
[[maybe_unused]] const bool kHaveDevice = [] {
  std::string why;
  if (!cuda_device_available(&why)) {
    std::printf("SKIPPED: %s\n", why.c_str());
    std::exit(77);
  }
  return true;
}();

// One GPU per rank where there are several: the node-local rank modulo the devices.
void select_device() {
  int rank = 0, local_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_free(&local);
  cuda_set_device(local_rank % cuda_device_count());
}

}  // namespace

TEST_CASE("public cases on device buffers over MPI (pinned staging)", "[cases]") {
  int np = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &np);
  select_device();
  void* stream = stream_create();
  int ran = 0;
  for (const Case& c : read_cases(RESHARD_CASES_DIR "/public.txt")) {
    const Mesh mesh = Mesh::parse(c.mesh);
    if (mesh.num_devices() > np) continue;
    const Type src = Type::parse(c.from, mesh), dst = Type::parse(c.to, mesh);
    for (bool p2p : {false, true}) {
      ExecOptions o;
      o.memory = Memory::device;
      o.stream = stream;
      o.point_to_point_only = p2p;
      Context ctx(mesh, MPI_COMM_WORLD, {}, o);
      if (!ctx.participates()) continue;
      const int me = ctx.device();
      for (Strategy s : {Strategy::reshard, Strategy::naive, Strategy::greedy_per_axis, Strategy::exchange}) {
        SynthOptions so;
        so.strategy = s;
        const Plan plan = synthesize(mesh, src, dst, so);
        INFO(c.name << " (" << name_of(s) << (p2p ? ", point-to-point" : "") << ") on " << np << " ranks, device "
                    << me << "\n" << plan);
        DeviceBytes in(static_cast<std::size_t>(ctx.local_bytes(src)), DeviceBytes::Kind::device);
        DeviceBytes out(static_cast<std::size_t>(ctx.local_bytes(dst)), DeviceBytes::Kind::device);
        device_fill_index(in.get(), src, mesh, me, stream);
        memset_async(out.get(), 0xff, out.size(), stream);
        ctx.reshard(plan, in.get(), in.size(), out.get(), out.size());
        std::int64_t bad = 0;
        if (dst.op == ReduceOp::none) {
          const std::int64_t mine = device_check_index(out.get(), dst, mesh, me, stream, &src);
          MPI_Allreduce(&mine, &bad, 1, MPI_INT64_T, MPI_SUM, ctx.comm());
        } else {
          std::vector<std::byte> host(out.size());
          memcpy_async(host.data(), out.get(), out.size(), stream);
          stream_synchronize(stream, "download");
          bad = ctx.count_index_mismatches(dst, host.data(), host.size(), &src);
        }
        CHECK(bad == 0);
        const std::int64_t bad_in = device_check_index(in.get(), src, mesh, me, stream);  // untouched
        if (src.op == ReduceOp::none) CHECK(bad_in == 0);
        // Pinned host staging moves no strided box in place: the packing rules of workspace.hpp.
        CHECK(ctx.executor()->workspace_bytes(plan) == device_workspace_bytes(plan, me, StagingRules{false, p2p}));
      }
    }
    ++ran;
  }
  stream_destroy(stream);
  CHECK((ran > 0 || np < 4));
}
