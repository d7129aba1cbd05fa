// PlanCache (synth.hpp): plans by key, least recently used out beyond a limit in bytes.
#include "reshard/error.hpp"
#include "reshard/synth.hpp"

namespace reshard {

namespace {
std::int64_t type_bytes(const Type& t) {
  std::int64_t b = sizeof(Type) + static_cast<std::int64_t>(t.dims.capacity() * sizeof(Dim));
  for (const Dim& d : t.dims)
    for (const auto& a : d.axes) b += static_cast<std::int64_t>(sizeof(std::string) + a.capacity());
  for (const auto& a : t.reduce_axes) b += static_cast<std::int64_t>(sizeof(std::string) + a.capacity());
  return b;
}
}  // namespace

std::int64_t approx_bytes(const Plan& plan) {
  std::int64_t b = sizeof(Plan) + type_bytes(plan.src) + type_bytes(plan.dst);
  for (const Axis& a : plan.mesh.axes()) b += static_cast<std::int64_t>(sizeof(Axis) + sizeof(int) + a.name.capacity());
  for (const Step& st : plan.steps) {
    b += static_cast<std::int64_t>(sizeof(Step)) + type_bytes(st.in) + type_bytes(st.out) +
         static_cast<std::int64_t>(st.dims.capacity() * sizeof(int));
    for (const auto& a : st.axes) b += static_cast<std::int64_t>(sizeof(std::string) + a.capacity());
  }
  for (const auto& n : plan.notes) b += static_cast<std::int64_t>(sizeof(std::string) + n.capacity());
  b += static_cast<std::int64_t>(plan.stats.step_bytes_recv_max.capacity() * sizeof(std::int64_t));
  return b;
}

PlanCache::PlanCache(std::int64_t limit_bytes) : limit_(limit_bytes) {
  if (limit_bytes < 0) throw Error(fmt::format("the plan cache limit must be >= 0 bytes, not {}", limit_bytes));
}

std::shared_ptr<const Plan> PlanCache::get(const Mesh& mesh, const Type& src, const Type& dst,
                                           const SynthOptions& opts) {
  std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}", mesh, src, dst, name_of(opts.strategy),
                                opts.topology.to_string(), opts.local_copy_GBps, opts.exact_stats);
  {
    std::lock_guard lock(mu_);
    auto it = plans_.find(key);
    if (it != plans_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      return it->second.plan;
    }
  }
  // Synthesize outside the lock: plans are pure, a race only wastes work.
  auto plan = std::make_shared<const Plan>(synthesize(mesh, src, dst, opts));
  const std::int64_t cost = approx_bytes(*plan) + 2 * static_cast<std::int64_t>(sizeof(std::string) + key.size()) + 64;
  std::lock_guard lock(mu_);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.plan;  // another thread won
  evict_to(limit_ - cost);
  lru_.push_front(key);
  bytes_ += cost;
  return plans_.emplace(std::move(key), Entry{std::move(plan), cost, lru_.begin()}).first->second.plan;
}

void PlanCache::evict_to(std::int64_t limit) {
  while (!lru_.empty() && bytes_ > limit) {
    auto it = plans_.find(lru_.back());
    bytes_ -= it->second.bytes;
    plans_.erase(it);
    lru_.pop_back();
    ++evictions_;
  }
}

std::size_t PlanCache::size() const {
  std::lock_guard lock(mu_);
  return plans_.size();
}

std::int64_t PlanCache::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

std::int64_t PlanCache::evictions() const {
  std::lock_guard lock(mu_);
  return evictions_;
}

std::int64_t PlanCache::limit_bytes() const {
  std::lock_guard lock(mu_);
  return limit_;
}

void PlanCache::set_limit_bytes(std::int64_t limit) {
  if (limit < 0) throw Error(fmt::format("the plan cache limit must be >= 0 bytes, not {}", limit));
  std::lock_guard lock(mu_);
  limit_ = limit;
  evict_to(limit);
}

void PlanCache::clear() {
  std::lock_guard lock(mu_);
  plans_.clear();
  lru_.clear();
  bytes_ = 0;
}

}  // namespace reshard
