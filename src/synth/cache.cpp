#include "reshard/synth.hpp"

namespace reshard {

std::shared_ptr<const Plan> PlanCache::get(const Mesh& mesh, const Type& src, const Type& dst,
                                           const SynthOptions& opts) {
  std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}", mesh, src, dst, name_of(opts.strategy),
                                opts.topology.to_string(), opts.local_copy_GBps, opts.exact_stats);
  {
    std::lock_guard lock(mu_);
    auto it = plans_.find(key);
    if (it != plans_.end()) return it->second;
  }
  // Synthesize outside the lock: plans are pure, a race only wastes work.
  auto plan = std::make_shared<const Plan>(synthesize(mesh, src, dst, opts));
  std::lock_guard lock(mu_);
  return plans_.emplace(key, std::move(plan)).first->second;
}

std::size_t PlanCache::size() const {
  std::lock_guard lock(mu_);
  return plans_.size();
}

void PlanCache::clear() {
  std::lock_guard lock(mu_);
  plans_.clear();
}

}  // namespace reshard
