// Context (context.hpp): a mesh over the first ranks of an MPI communicator, with the plan
// cache, the MPI backend's communicators and the executor.
#include "reshard/context.hpp"

#include <vector>

#include "mpi_comm.hpp"
#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"

namespace reshard {

namespace {

// A duplicate of `comm` that reports errors instead of aborting (so that they can be thrown).
MPI_Comm duplicate(MPI_Comm comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw Error("reshard::Context needs MPI to be initialised (MPI_Init) first");
  // MPI_Comm_dup of MPI_COMM_NULL is an error on no communicator: MPI_COMM_WORLD's handler,
  // fatal by default, would end the job instead of throwing.
  if (comm == MPI_COMM_NULL) throw Error("reshard::Context: the communicator is MPI_COMM_NULL");
  MPI_Comm dup = MPI_COMM_NULL;
  mpi::check(MPI_Comm_dup(comm, &dup), "MPI_Comm_dup");
  mpi::check(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  return dup;
}

}  // namespace

Context::Context(const Mesh& mesh, MPI_Comm comm, SynthOptions opts, ExecOptions exec)
    : mesh_(mesh), opts_(std::move(opts)) {
  const double timeout_s = mpi::resolve_timeout(exec.timeout_s);  // throws on a bad RESHARD_TIMEOUT_S
  mpi::MpiGroup all(duplicate(comm), true, "world", timeout_s);  // freed when the constructor ends
  std::string err;
  if (mesh_.num_devices() > all.size())
    err = fmt::format("mesh {} has {} devices but the communicator has only {} ranks", mesh_,
                      mesh_.num_devices(), all.size());
  else if (mesh_.ranks_needed() > all.size())
    err = fmt::format("mesh {} lists rank {}, beyond the communicator's {} ranks (0-{})", mesh_,
                      mesh_.ranks_needed() - 1, all.size(), all.size() - 1);
  check_agreement(all, "the mesh", fnv1a(mesh_.to_string()), fmt::format("mesh {}", mesh_), err);
  // The devices' communicator ranks them by device number (key), whichever ranks they sit on.
  const int device = mesh_.device_of(all.rank());
  MPI_Comm devices = MPI_COMM_NULL;
  mpi::check(MPI_Comm_split(all.comm(), device >= 0 ? 0 : MPI_UNDEFINED, device, &devices), "MPI_Comm_split");
  if (devices == MPI_COMM_NULL) return;
  device_ = device;
  comm_ = std::make_unique<mpi::MpiCommunicator>(devices, mesh_, timeout_s);
  exec_ = std::make_unique<Executor>(*comm_, exec);
}

Context::~Context() = default;

MPI_Comm Context::comm() const {
  return comm_ ? static_cast<const mpi::MpiCommunicator&>(*comm_).comm() : MPI_COMM_NULL;
}

std::shared_ptr<const Plan> Context::plan(const Type& src, const Type& dst) {
  return plans_.get(mesh_, src, dst, opts_);
}

Box Context::local_block(const Type& type) const {
  if (participates()) return type.block(mesh_, device_);
  Box b;
  b.dims.assign(type.dims.size(), Interval{});
  return b;
}
std::int64_t Context::local_elements(const Type& type) const {
  return participates() ? type.local_elements(mesh_, device_) : 0;
}
std::int64_t Context::local_bytes(const Type& type) const {
  return participates() ? type.local_bytes(mesh_, device_) : 0;
}

void Context::reshard(const Plan& plan, const void* in, std::size_t in_bytes, void* out, std::size_t out_bytes) {
  if (exec_) exec_->execute(plan, in, in_bytes, out, out_bytes);
}

void Context::fill_index(const Type& type, void* local) const {
  if (participates()) reshard::fill_index(local, type, mesh_, device_);
}

namespace {

// The logical value of a pending reduction's block, on the group's first member (which alone
// returns true): every member's array gathered, then reduced in group order.
bool reduce_to_lead(Group& g, const Type& type, const void* local, std::int64_t n, std::vector<std::byte>& acc) {
  const std::size_t elem = size_of(type.dtype);
  std::vector<Segment> segs(g.size());
  for (int i = 0; i < g.size(); ++i) segs[i] = {i * n, n};
  std::vector<std::byte> all(static_cast<std::size_t>(g.size() * n) * elem);
  g.allgatherv(local, n, all.data(), segs, type.dtype);
  if (g.rank() != 0) return false;
  acc.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n * elem));
  for (int i = 1; i < g.size(); ++i) reduce_into(acc.data(), all.data() + i * n * elem, n, type.dtype, type.op);
  return true;
}

}  // namespace

std::int64_t Context::count_index_mismatches(const Type& type, const void* local, std::size_t bytes,
                                             const Type* source) {
  if (!participates()) return 0;
  std::string err;
  if (static_cast<std::int64_t>(bytes) != local_bytes(type))
    err = fmt::format("device {} checks {} bytes against its shard of {}, which has {}", device_, bytes, type,
                      local_bytes(type));
  std::string what = fmt::format("{} on mesh {}", type, mesh_);
  check_agreement(comm_->world(), "the type to check", fnv1a(what), what, err);
  std::int64_t bad = 0;
  if (type.op == ReduceOp::none) {
    bad = check_index(local, type, mesh_, device_, 0.0, source);
  } else {
    std::vector<std::byte> acc;
    if (reduce_to_lead(comm_->group(type.reduce_axes), type, local, local_elements(type), acc))
      bad = check_index(acc.data(), type, mesh_, device_, 0.0, source);
  }
  std::int64_t total = 0;
  comm_->world().allreduce(&bad, &total, 1, DType::i64, ReduceOp::sum);
  return total;
}

}  // namespace reshard
