#pragma once
// Device buffers over a host-memory backend (docs/design.md 4: Debian's Open MPI is not CUDA-aware).
// make_host_staging() wraps a Communicator whose operations take host memory: every Group
// operation given device pointers copies what it sends into pinned host memory, waits for the
// stream, runs the host operation there, and copies what it received back into device memory
// (enqueued on the stream: later work on it sees the data). Only the segments that move are
// copied; host pointers pass straight through (check_agreement's control messages). The
// pinned buffers (cudaMallocHost) grow on demand and are kept for the wrapper's lifetime.
//
// Collectives and thread safety: those of the wrapped communicator; `inner` must outlive the
// wrapper.
#include <memory>

#include "reshard/comm.hpp"

namespace reshard::exec {

std::unique_ptr<Communicator> make_host_staging(Communicator& inner, void* stream);

}  // namespace reshard::exec
