#pragma once
// The MPI backend (host buffers): comm.hpp's Group and Communicator over MPI communicators.
// Groups are MPI_Comm_split of the devices' communicator with color = the device's coordinates
// outside the group's axes and key = its position inside (group_of() order), made once per
// axis list and cached. Every MPI call's return code is checked (the communicators use
// MPI_ERRORS_RETURN) and turns into reshard::Error naming the call and the rank. Blocking calls
// have a deadline (watchdog.hpp): collectives are armed on the watchdog thread, exchange()
// polls its requests; past it the rank reports what it waited for and ends the job.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <mpi.h>

#include "reshard/comm.hpp"
#include "watchdog.hpp"

namespace reshard::mpi {

// Throws Error("<what> failed on rank <world rank>: <MPI's message>") unless rc is MPI_SUCCESS.
void check(int rc, const char* what);
// The MPI datatype of one element (f16 and bf16 travel as 16-bit words).
MPI_Datatype datatype_of(DType t);
// MPI's built-in op where it computes as reduce_into does, else a commutative user op that
// calls reduce_into (f16/bf16 in float; 8- and 16-bit integer sums, which must wrap).
MPI_Op op_of(DType t, ReduceOp op);

// One point-to-point message as MPI posts it: `count` items of `type` at `data`.
struct Posted {
  int peer = 0;
  void* data = nullptr;
  int count = 0;
  MPI_Datatype type = MPI_BYTE;
};

class MpiGroup final : public Group {
 public:
  // Takes ownership of `comm` (freed in the destructor) when `owned`. `name` is how reports
  // call the group ("{x,y}"); `timeout_s` the deadline of its blocking calls (resolve_timeout:
  // < 0 is $RESHARD_TIMEOUT_S or 300 s, 0 none).
  MpiGroup(MPI_Comm comm, bool owned, std::string name = "world", double timeout_s = -1);
  ~MpiGroup() override;
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  MPI_Comm comm() const { return comm_; }
  const std::string& name() const { return name_; }
  double timeout_s() const { return timeout_s_; }
  // The watchdog's record of the next blocking call on this group (counts it).
  Waiting waiting(const char* call);
  int size() const override { return size_; }
  int rank() const override { return rank_; }
  void alltoallv(const void* send, std::span<const Segment> send_segs, void* recv,
                 std::span<const Segment> recv_segs, DType t) override;
  void allgatherv(const void* send, std::int64_t count, void* recv, std::span<const Segment> recv_segs,
                  DType t) override;
  void reduce_scatter(const void* send, void* recv, std::span<const std::int64_t> counts, DType t,
                      ReduceOp op) override;
  void allreduce(const void* send, void* recv, std::int64_t count, DType t, ReduceOp op) override;
  void exchange(std::span<const SendMsg> sends, std::span<const RecvMsg> recvs, DType t) override;
  void barrier() override;
  // Boxes as derived datatypes (mpi_boxes.cpp), moved by MPI_Isend/MPI_Irecv.
  bool moves_boxes() const override { return true; }
  std::unique_ptr<BoxTransfer> prepare_boxes(std::span<const BoxMsg> sends, std::span<const BoxMsg> recvs,
                                             DType t) override;
  // exchange() of posted messages: receives first, then sends, then a wait with the deadline.
  void post_and_wait(std::span<const Posted> recvs, std::span<const Posted> sends);

 private:
  // Fills counts_/displs_ (slot 0 or 1) from segments, checking that they fit MPI's int.
  void to_ints(std::span<const Segment> segs, int which);
  // MPI_Waitall of exchange()'s requests (receives first) with the deadline: polls them and,
  // when none completes for timeout_s_, names the peers still pending and ends the job.
  void wait_exchange(std::span<const Posted> recvs, std::span<const Posted> sends);

  MPI_Comm comm_;
  bool owned_;
  int size_ = 0, rank_ = 0;
  std::string name_;
  double timeout_s_ = 0;
  std::int64_t calls_ = 0;  // blocking calls so far (the watchdog's roll call compares them)
  std::vector<int> counts_[2], displs_[2];  // reused between calls
  std::vector<Posted> posted_[2];  // exchange(): receives, sends
  std::vector<MPI_Request> requests_;
};

class MpiCommunicator final : public Communicator {
 public:
  // `devices` has exactly mesh.num_devices() ranks, rank = device number; taken over (freed
  // with this object). Its error handler must already be MPI_ERRORS_RETURN. `timeout_s`: the
  // deadline of every group's blocking calls (MpiGroup).
  MpiCommunicator(MPI_Comm devices, Mesh mesh, double timeout_s = -1);

  std::string_view backend() const override { return "mpi"; }
  const Mesh& mesh() const override { return mesh_; }
  int device() const override { return world_.rank(); }
  Group& world() override { return world_; }
  Group& group(const std::vector<std::string>& axes) override;
  MPI_Comm comm() const { return world_.comm(); }

 private:
  Mesh mesh_;
  MpiGroup world_;
  std::map<std::vector<std::string>, std::unique_ptr<MpiGroup>> groups_;
};

}  // namespace reshard::mpi
