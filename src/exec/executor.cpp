// The executor (executor.hpp): per plan, once, each step's transfers and collective
// (step_exec.hpp) and the buffers they run in; per call, an agreement check and the steps.
#include "reshard/executor.hpp"

#include <algorithm>
#include <cstring>
#include <list>

#include "host_staging.hpp"
#include "reshard/device_memory.hpp"
#include "fault.hpp"
#include "reshard/error.hpp"
#include "reshard/route.hpp"
#include "reshard/workspace.hpp"
#include "step_exec.hpp"

namespace reshard {

namespace {
constexpr int kInput = kInputSlot;      // the caller's input; slot 0 is the caller's output
constexpr int kSlots = kNumSlots;       // 0: output, 1-2: BufferPlan scratch
constexpr int kStaging = kStagingSlot;  // the staging buffer, for what no free slot can hold
using Place = StagingPlace;             // where a step's send or receive staging lives

// A workspace buffer: host memory, or device memory for device execution.
struct Work {
  std::unique_ptr<std::byte[]> host;
  DeviceBytes device;
  std::byte* get() const { return host ? host.get() : device.get(); }
};
}  // namespace

// A plan's prepared state. Its workspace lives in the executor's pool (Executor::Pool), shared
// by every plan: calls run one at a time, so plans never use it at once.
struct Executor::Prepared {
  std::vector<exec::StepExec> steps;
  std::vector<int> in_slot, out_slot;
  std::vector<Place> send_at, recv_at;
  std::int64_t capacity[kSlots] = {};  // bytes; [0]: this device's output buffer, [1-2]: scratch
  std::int64_t staging = 0;            // bytes of the staging buffer
  std::int64_t bytes = 0;              // workspace this plan needs: scratch and staging
  std::int64_t state_bytes = 0;        // what the cache charges for it (prepared_state_bytes)
  std::list<std::string>::iterator lru;  // its place in Executor::lru_
};

struct Executor::Pool {
  Work scratch[kSlots];  // [0] unused: the caller's output
  Work staging;
  std::int64_t size[kSlots + 1] = {};  // [kSlots]: staging
};

std::string plan_fingerprint(const Plan& plan) {
  std::string s = fmt::format("{}|{}|{}|{}", plan.mesh, plan.src, plan.dst, plan.strategy);
  for (const Step& step : plan.steps) {
    s += '|';
    s += to_string(step);
  }
  return s;
}

namespace {

std::string summary(const Plan& plan) {
  return fmt::format("mesh {}, {} -> {} ({} plan, {} steps)", plan.mesh, plan.src, plan.dst, plan.strategy,
                     plan.steps.size());
}

bool overlap(const void* a, std::size_t na, const void* b, std::size_t nb) {
  auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
  return na && nb && pa < pb + nb && pb < pa + na;
}

// What is wrong with this device's call, or "" (checked before the agreement, so that every
// device learns of it).
std::string local_error(const Communicator& comm, const Plan& plan, const void* in, std::size_t in_bytes,
                        const void* out, std::size_t out_bytes) {
  const int me = comm.device();
  if (!(plan.mesh == comm.mesh()))
    return fmt::format("the plan is for mesh {}, the communicator's mesh is {}", plan.mesh, comm.mesh());
  auto want_in = static_cast<std::size_t>(plan.src.local_bytes(plan.mesh, me));
  auto want_out = static_cast<std::size_t>(plan.dst.local_bytes(plan.mesh, me));
  if (in_bytes != want_in)
    return fmt::format("the input buffer of device {} has {} bytes; its shard of the source {} has {}", me,
                       in_bytes, plan.src, want_in);
  if (out_bytes != want_out)
    return fmt::format("the output buffer of device {} has {} bytes; its shard of the target {} has {}", me,
                       out_bytes, plan.dst, want_out);
  if ((in_bytes && !in) || (out_bytes && !out)) return fmt::format("device {} passed a null buffer", me);
  if (overlap(in, in_bytes, out, out_bytes))
    return fmt::format("the input and output buffers of device {} overlap", me);
  return {};
}

// What makes `plan` unfit to run, or "": the executor checks a plan against its own invariants
// before preparing it (a hand-edited or corrupted plan must throw, not read past a buffer).
// Symbolic: types valid on the mesh, steps chained from src to dst, each step exact for its op
// (step_is_valid), group axes those of the mesh. An empty plan needs src == dst (every device's
// input is then its output).
std::string plan_error(const Plan& plan) {
  const Mesh& m = plan.mesh;
  try {
    plan.src.validate(m);
    plan.dst.validate(m);
  } catch (const Error& e) {
    return fmt::format("the plan's source or target is not valid on its mesh: {}", e.what());
  }
  if (plan.src.dtype != plan.dst.dtype || plan.src.global_shape() != plan.dst.global_shape())
    return fmt::format("the plan turns {} into {}: dtype and global shape must stay", plan.src, plan.dst);
  if (plan.steps.empty())
    return plan.src == plan.dst ? std::string() : fmt::format("the plan has no steps but its source {} is not its target {}", plan.src, plan.dst);
  for (std::size_t k = 0; k < plan.steps.size(); ++k) {
    const Step& st = plan.steps[k];
    const Type& before = plan.type_after(static_cast<int>(k) - 1);
    if (!(st.in == before))
      return fmt::format("step {} ({}) starts from {}, but the type before it is {}", k + 1, name_of(st.op), st.in, before);
    for (const std::string& a : st.axes)
      if (m.axis_index(a) < 0) return fmt::format("step {} ({}) names axis '{}', which mesh {} lacks", k + 1, name_of(st.op), a, m);
    std::string why;
    if (!step_is_valid(m, st, &why)) return fmt::format("step {} ({} -> {} by {}) is not valid: {}", k + 1, st.in, st.out, name_of(st.op), why);
  }
  if (!(plan.steps.back().out == plan.dst))
    return fmt::format("the last step ends at {}, but the plan's target is {}", plan.steps.back().out, plan.dst);
  return {};
}

// Device execution: both buffers must be device memory (a host pointer would crash a kernel).
std::string device_buffer_error(int me, const void* in, std::size_t in_bytes, const void* out, std::size_t out_bytes) {
  if (in_bytes && !is_device_pointer(in))
    return fmt::format("the input buffer of device {} is not device memory (ExecOptions::memory is device)", me);
  if (out_bytes && !is_device_pointer(out))
    return fmt::format("the output buffer of device {} is not device memory (ExecOptions::memory is device)", me);
  return {};
}

// BufferPlan's slots (it only puts an intermediate in the output buffer where it fits on
// every device).
void assign_slots(const Plan& plan, Executor::Prepared& p) {
  const int n = static_cast<int>(plan.steps.size());
  BufferPlan bp = buffer_plan(plan);
  p.in_slot.assign(n, kInput);
  p.out_slot.assign(n, 0);
  for (int k = 0; k < n; ++k) {
    p.out_slot[k] = bp.slot[k];
    if (k > 0) p.in_slot[k] = p.out_slot[k - 1];
  }
}

// Staging goes where nothing lives during the step (reshard::place_staging, the same rule
// the plan's workspace figure is computed with). Returns the dedicated staging buffer's size.
std::int64_t place_staging(const Plan& plan, Executor::Prepared& p) {
  const auto elem = static_cast<std::int64_t>(size_of(plan.src.dtype));
  std::vector<StepStaging> bytes;
  for (const exec::StepExec& s : p.steps) bytes.push_back({s.send_stage * elem, s.recv_stage * elem});
  return reshard::place_staging(p.in_slot, p.out_slot, p.capacity, bytes, &p.send_at, &p.recv_at);
}

// What the prepared-state cache charges for a plan: the same figure on every device (it counts
// per step the members of the step's group, not this device's transfers), so that every device
// evicts the same plans at the same calls and first calls stay collective on all of them.
std::int64_t prepared_state_bytes(const Plan& plan) {
  constexpr std::int64_t kPerStep = 1024, kPerPeer = 192;  // StepExec, and an Xfer with its shapes
  std::int64_t b = 512;
  for (const Step& st : plan.steps) {
    std::int64_t g = 1;
    for (const auto& a : st.axes) g *= plan.mesh.axis_size(a);
    b += kPerStep + kPerPeer * (st.op == Op::exchange ? plan.mesh.num_devices() : g) *
                         static_cast<std::int64_t>(1 + st.in.rank());
  }
  return b;
}

Work allocate(std::int64_t bytes, bool device) {
  Work w;
  if (device) w.device = DeviceBytes(static_cast<std::size_t>(bytes), DeviceBytes::Kind::device);
  else w.host = std::make_unique_for_overwrite<std::byte[]>(static_cast<std::size_t>(bytes));
  return w;
}

}  // namespace

Executor::Executor(Communicator& comm, ExecOptions opts) : comm_(comm), opts_(opts), pool_(std::make_unique<Pool>()) {
  if (opts_.prepared_cache_bytes < 0)
    throw Error(fmt::format("ExecOptions::prepared_cache_bytes must be >= 0, not {}", opts_.prepared_cache_bytes));
  const bool device_backend = comm_.memory() == Memory::device;
  if (opts_.memory == Memory::host) {
    if (device_backend)
      throw Error(fmt::format("the {} backend moves device memory: run it with ExecOptions::memory = Memory::device",
                              comm_.backend()));
    return;
  }
  if (!cuda_device_count()) throw Error("device execution (ExecOptions::memory = Memory::device) needs a CUDA device");
  if (device_backend && opts_.stream && opts_.stream != comm_.stream())
    throw Error(fmt::format("ExecOptions::stream must be the {} communicator's own stream (or null)", comm_.backend()));
  if (!opts_.stream) opts_.stream = comm_.stream();
  if (!device_backend) staged_ = exec::make_host_staging(comm_, opts_.stream);
}
Executor::~Executor() = default;

std::string Executor::key_of(const Plan& plan) const {
  std::string key = plan_fingerprint(plan);
  if (opts_.point_to_point_only) key += "|point-to-point only";  // devices must agree on it too
  return key;
}

Executor::Prepared& Executor::prepare(const Plan& plan, const std::string& key) {
  auto p = std::make_unique<Prepared>();
  const int me = comm_.device();
  const std::int64_t budget = staging_budget_bytes(plan) / static_cast<std::int64_t>(size_of(plan.src.dtype));
  for (const Step& step : plan.steps)
    p->steps.push_back(exec::prepare_step(transport(), step, opts_.point_to_point_only, budget));
  const bool device = opts_.memory == Memory::device;
  if (device)
    for (exec::StepExec& s : p->steps) exec::prepare_device(s, opts_.stream);
  assign_slots(plan, *p);
  p->capacity[0] = plan.dst.local_bytes(plan.mesh, me);
  for (std::size_t k = 0; k < plan.steps.size(); ++k) {
    if (p->out_slot[k] == 0) continue;  // assign_slots kept what lands there within the output
    std::int64_t& b = p->capacity[p->out_slot[k]];
    b = std::max(b, plan.steps[k].out.local_bytes(plan.mesh, me));
  }
  p->staging = place_staging(plan, *p);
  p->bytes = p->capacity[1] + p->capacity[2] + p->staging;
  p->state_bytes = prepared_state_bytes(plan);
  // Least recently used plans go first, until this one fits (it stays even if it alone does not).
  evict_to(opts_.prepared_cache_bytes - p->state_bytes);
  state_bytes_ += p->state_bytes;
  lru_.push_front(key);
  p->lru = lru_.begin();
  return *prepared_.emplace(key, std::move(p)).first->second;
}

// Grows the shared workspace to what `p` needs. Device execution may still have enqueued work
// on the old buffers (ExecOptions::synchronize false): it is waited for before they are freed.
void Executor::fit_pool(const Prepared& p) {
  const bool device = opts_.memory == Memory::device;
  const std::int64_t want[kSlots + 1] = {0, p.capacity[1], p.capacity[2], p.staging};
  bool synced = false;
  for (int s = 1; s <= kSlots; ++s) {
    if (want[s] <= pool_->size[s]) continue;
    if (device && !synced) transport().synchronize(), synced = true;
    Work& w = s < kSlots ? pool_->scratch[s] : pool_->staging;
    w = Work{};  // free first: the old and new buffer are never held together
    w = allocate(want[s], device);
    pool_->size[s] = want[s];
  }
  std::int64_t held = 0;
  for (int s = 1; s <= kSlots; ++s) held += pool_->size[s];
  peak_ = std::max(peak_, held);
}

const Executor::Recent& Executor::recent(const Plan& plan) {
  constexpr std::size_t kRecent = 16;
  auto hit = std::find_if(recent_.begin(), recent_.end(), [&](const Recent& r) { return r.plan.same_steps(plan); });
  if (hit == recent_.end()) {
    if (recent_.size() == kRecent) recent_.pop_back();
    std::string key = key_of(plan);
    const std::uint64_t hash = fnv1a(key);
    recent_.insert(recent_.begin(), Recent{plan, std::move(key), hash, summary(plan)});
  } else if (hit != recent_.begin()) {
    std::rotate(recent_.begin(), hit, hit + 1);  // most recent first
  }
  return recent_.front();
}

void Executor::execute(const Plan& plan, const void* in, std::size_t in_bytes, void* out, std::size_t out_bytes) {
  const Recent& r = recent(plan);
  const std::string& key = r.key;
  auto it = prepared_.find(key);
  std::string err = local_error(comm_, plan, in, in_bytes, out, out_bytes);
  // A new plan is checked against the executor's invariants once, before it is prepared.
  if (err.empty() && it == prepared_.end()) err = plan_error(plan);
  const bool device = opts_.memory == Memory::device;
  if (err.empty() && device) err = device_buffer_error(comm_.device(), in, in_bytes, out, out_bytes);
  if (opts_.check_every_call || it == prepared_.end())
    check_agreement(comm_.world(), "the plan", r.hash, r.summary, err);
  else if (!err.empty())
    throw MismatchError(err);
  Prepared& p = it != prepared_.end() ? *it->second : prepare(plan, key);
  if (p.lru != lru_.begin()) lru_.splice(lru_.begin(), lru_, p.lru);  // most recently used first
  fit_pool(p);
  if (plan.steps.empty()) {
    if (device) memcpy_async(out, in, in_bytes, opts_.stream);
    else if (in_bytes) std::memcpy(out, in, in_bytes);
  }
  auto buffer = [&](int slot) {
    return slot == 0 ? static_cast<std::byte*>(out) : slot == kStaging ? pool_->staging.get() : pool_->scratch[slot].get();
  };
  auto at = [&](Place pl) { return buffer(pl.slot) + pl.offset; };
  for (std::size_t k = 0; k < p.steps.size(); ++k) {
    const std::byte* src = p.in_slot[k] == kInput ? static_cast<const std::byte*>(in) : buffer(p.in_slot[k]);
    exec::fault_point(comm_.device(), static_cast<int>(k) + 1);  // tests only (RESHARD_FAULT)
    exec::run_step(p.steps[k], src, buffer(p.out_slot[k]), at(p.send_at[k]), at(p.recv_at[k]));
  }
  if (device && opts_.synchronize) transport().synchronize();
}

std::int64_t Executor::workspace_bytes(const Plan& plan) const {
  auto it = prepared_.find(key_of(plan));
  return it == prepared_.end() ? 0 : it->second->bytes;
}

namespace {
std::string slot_name(int slot) {
  return slot == kInput ? "input" : slot == 0 ? "output" : slot == kStaging ? "staging" : fmt::format("scratch{}", slot);
}
}  // namespace

std::string Executor::explain(const Plan& plan) const {
  auto it = prepared_.find(key_of(plan));
  if (it == prepared_.end()) return {};
  const Prepared& p = *it->second;
  std::string r;
  for (std::size_t k = 0; k < p.steps.size(); ++k) {
    const exec::StepExec& s = p.steps[k];
    // An all-to-all of boxes moved in place runs as point-to-point messages, not one MPI_Alltoallv.
    const std::string call = s.boxes && s.mode == exec::Mode::alltoallv ? "alltoall_p2p" : fmt::to_string(s.mode);
    r += fmt::format("{:>2}. {:<15}{:<15}{} -> {}{}{}{}{}\n", k + 1, name_of(plan.steps[k].op), call,
                     slot_name(p.in_slot[k]), slot_name(p.out_slot[k]),
                     s.boxes ? ", strided boxes moved in place (no staging)" : "",
                     s.send_stage ? fmt::format(", packs {} elements in {}", s.send_stage, slot_name(p.send_at[k].slot)) : "",
                     s.rounds.size() > 1 ? fmt::format(" per round, {} rounds", s.rounds.size()) : "",
                     s.recv_stage ? fmt::format(", unpacks {} elements from {}", s.recv_stage, slot_name(p.recv_at[k].slot)) : "");
  }
  return r;
}

void Executor::release_workspace() {
  if (opts_.memory == Memory::device) transport().synchronize();
  prepared_.clear();
  lru_.clear();
  *pool_ = Pool{};
  state_bytes_ = peak_ = 0;
}

std::int64_t Executor::workspace_held_bytes() const {
  std::int64_t held = 0;
  for (int s = 1; s <= kSlots; ++s) held += pool_->size[s];
  return held;
}

void Executor::set_prepared_cache_bytes(std::int64_t limit) {
  if (limit < 0) throw Error(fmt::format("the prepared-state cache limit must be >= 0 bytes, not {}", limit));
  opts_.prepared_cache_bytes = limit;
  evict_to(limit);
}

// Drops least recently used plans until their state takes at most `limit` bytes (or none is left).
void Executor::evict_to(std::int64_t limit) {
  while (!lru_.empty() && state_bytes_ > limit) {
    auto victim = prepared_.find(lru_.back());
    state_bytes_ -= victim->second->state_bytes;
    prepared_.erase(victim);
    lru_.pop_back();
    ++evictions_;
  }
}

}  // namespace reshard
