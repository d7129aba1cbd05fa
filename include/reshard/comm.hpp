#pragma once
// The communicator backend interface (docs/design.md 4): what the executor asks of MPI, NCCL or any
// other transport. A backend gives, for one device of a mesh, a Group per axis set: the devices
// that agree with it on every coordinate outside those axes, ranked by the mixed-radix number
// of their coordinates on the axes (first axis major), exactly route.hpp's group_of() order.
//
// Every operation is typed by a DType (and a ReduceOp where it reduces) and counts elements,
// not bytes. Buffers are the backend's kind of memory (host for MPI, device for NCCL).
//
// Collectives: every Group operation is collective over that group's members, which must call
// it in the same order with matching counts. Communicator::group() and world() are collective
// over all devices of the mesh the first time an axis list is asked for.
// Thread safety: none. One thread at a time per Communicator (MPI_THREAD_FUNNELED is enough).
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "reshard/dtype.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

namespace reshard {

// Where one peer's data sits in a buffer: `count` elements starting `offset` elements in.
struct Segment {
  std::int64_t offset = 0, count = 0;
  bool operator==(const Segment&) const = default;
};

// One message of a sparse point-to-point exchange; `peer` is a rank of the group.
struct SendMsg {
  int peer = 0;
  const void* data = nullptr;
  std::int64_t count = 0;
};
struct RecvMsg {
  int peer = 0;
  void* data = nullptr;
  std::int64_t count = 0;
};

// A box of a dense row-major array (shape, the box's corner and extent, all of one rank),
// sent to or received from group rank `peer` in place: for transports that move strided data
// without packing it (MPI derived datatypes).
struct BoxMsg {
  int peer = 0;
  std::vector<std::int64_t> shape, offset, extent;
};

// Boxes moved between a send and a receive array, prepared once (Group::prepare_boxes) and
// run many times. run() is collective like the operation it was prepared as.
class BoxTransfer {
 public:
  virtual ~BoxTransfer() = default;
  virtual void run(const void* send, void* recv) = 0;
};

class Group {
 public:
  virtual ~Group() = default;
  virtual int size() const = 0;
  virtual int rank() const = 0;

  // Member i gets send[send_segs[i]] into its recv[recv_segs[me]]. Segments are indexed by
  // group rank (size() of each); zero counts are allowed; receive segments must not overlap.
  virtual void alltoallv(const void* send, std::span<const Segment> send_segs, void* recv,
                         std::span<const Segment> recv_segs, DType t) = 0;
  // Every member contributes `count` elements from `send`; member i's land at recv_segs[i]
  // (counts equal on every member, offsets may differ).
  virtual void allgatherv(const void* send, std::int64_t count, void* recv,
                          std::span<const Segment> recv_segs, DType t) = 0;
  // `send` holds counts[0] elements meant for member 0, then counts[1] for member 1, ...;
  // member i receives the reduction over all members of its part (counts[i] elements).
  virtual void reduce_scatter(const void* send, void* recv, std::span<const std::int64_t> counts,
                              DType t, ReduceOp op) = 0;
  virtual void allreduce(const void* send, void* recv, std::int64_t count, DType t, ReduceOp op) = 0;
  // Posts every receive and send, then waits for all of them. At most one message per peer
  // and direction; a message to or from oneself is not allowed (copy locally instead).
  virtual void exchange(std::span<const SendMsg> sends, std::span<const RecvMsg> recvs, DType t) = 0;
  virtual void barrier() = 0;

  // Whether prepare_boxes can succeed: the transport moves strided boxes in place (false by
  // default; the same on every member of a backend).
  virtual bool moves_boxes() const { return false; }
  // The data movement of alltoallv or exchange (at most one message per member and
  // direction) with each message a box of the send or receive array, moved without packing.
  // Local: nothing is communicated until run(), which is collective over the members that
  // exchange messages. nullptr when the transport cannot move these boxes in place (always,
  // by default; the caller then packs and unpacks).
  virtual std::unique_ptr<BoxTransfer> prepare_boxes(std::span<const BoxMsg> sends,
                                                     std::span<const BoxMsg> recvs, DType t) {
    (void)sends, (void)recvs, (void)t;
    return nullptr;
  }
};

// Where a backend's buffers live.
enum class Memory { host, device };

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string_view backend() const = 0;  // "mpi", "nccl"
  // The memory its Group operations move: host (MPI) or device (NCCL, stream-ordered).
  virtual Memory memory() const { return Memory::host; }
  // Waits until every operation issued so far has completed. A stream-ordered backend (NCCL)
  // returns from its operations once they are enqueued; this waits for its stream, checking
  // for asynchronous errors with a timeout. Others complete every call before returning, and
  // this does nothing. Local.
  virtual void synchronize() {}
  // The cudaStream_t a stream-ordered backend enqueues its operations on; nullptr otherwise.
  virtual void* stream() const { return nullptr; }
  virtual const Mesh& mesh() const = 0;
  virtual int device() const = 0;  // this member's device number on mesh()
  // Every device of the mesh, ranked by device number.
  virtual Group& world() = 0;
  // This device's group over `axes` (order matters: it numbers the group). Created on first
  // use (collective over all devices), cached afterwards.
  virtual Group& group(const std::vector<std::string>& axes) = 0;
};

// Collective over `group`: checks that every member passes the same `fingerprint` (a hash of
// what it is about to do) and that none has a `local_error`, before any data moves. On any
// difference every member throws MismatchError: "ranks disagree on <subject> (rank r has
// <its summary>; rank q has <q's summary>)", or, where some member has a local error, that
// error (on that member) and "rank q cannot run it: <error>" (on the others). One small
// all-reduce when all agree; a gather of the summaries only on failure.
void check_agreement(Group& group, std::string_view subject, std::uint64_t fingerprint,
                     const std::string& summary, const std::string& local_error = {});

// 64-bit FNV-1a, the fingerprint used with check_agreement.
std::uint64_t fnv1a(std::string_view text, std::uint64_t seed = 0xcbf29ce484222325ull);

}  // namespace reshard

template <>
struct fmt::formatter<reshard::Segment> : fmt::formatter<std::string> {
  template <typename Ctx>
  auto format(const reshard::Segment& s, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(fmt::format("{}+{}", s.offset, s.count), ctx);
  }
};
