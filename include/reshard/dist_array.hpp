#pragma once
// DistArray<T>: a distributed array that owns this rank's shard (a std::vector<T>), knows its
// Type and runs on a Context.
//
//   reshard::DistArray<float> a(ctx, reshard::Type::parse("f32[1024{x},64]", ctx.mesh()));
//   std::ranges::fill(a.local(), 1.0f);
//   auto b = a.reshard_to(reshard::Type::parse("f32[1024,64{x}]", ctx.mesh()));  // collective
//
// T is the dtype's storage type: double f64, float f32, std::int64_t i64, std::int32_t i32,
// std::int16_t i16, std::int8_t i8, std::uint8_t u8, and std::uint16_t for f16 and bf16 (their
// bits). On ranks outside the mesh the shard is empty and resharding does nothing.
//
// Collective (over the Context's participants): reshard_to(), reshard() and reshard_into().
// Everything else
// is local. Thread safety: as the Context (one collective at a time); distinct arrays may be
// read concurrently.
//
// Cross-mesh and batched resharding of DistArrays, synchronous and asynchronous, is in
// dist_batch.hpp. While an asynchronous reshard reads an array (until its handle's wait() is
// called or the handle is dropped) the array refuses writes: the non-const local(), release(),
// reshard(), assigning to it and reshard_into() it throw MismatchError; reading it (const
// local(), copies, other reshards from it) is fine. The rule follows program order, not the
// messages' progress, so that every rank of an SPMD program refuses alike. Destroying the
// array first finishes that reshard.
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "reshard/context.hpp"
#include "reshard/error.hpp"

namespace reshard {

namespace detail {
// An asynchronous reshard reading an array's shard (dist_batch.hpp). The array keeps a weak
// reference: once the reshard's handle is gone (its destructor finished the reshard) or waited
// for, the array is free again.
struct ShardReader {
  virtual ~ShardReader() = default;
  virtual bool done() const = 0;  // wait() was called
  virtual void finish() = 0;  // blocks until the reshard no longer reads (collective, as wait())
};
}  // namespace detail

// Whether T stores elements of dtype t.
template <class T>
constexpr bool stores(DType t) {
  switch (t) {
    case DType::f64: return std::is_same_v<T, double>;
    case DType::f32: return std::is_same_v<T, float>;
    case DType::f16:
    case DType::bf16: return std::is_same_v<T, std::uint16_t>;
    case DType::i64: return std::is_same_v<T, std::int64_t>;
    case DType::i32: return std::is_same_v<T, std::int32_t>;
    case DType::i16: return std::is_same_v<T, std::int16_t>;
    case DType::i8: return std::is_same_v<T, std::int8_t>;
    case DType::u8: return std::is_same_v<T, std::uint8_t>;
  }
  return false;
}

template <class T>
class DistArray {
 public:
  // A zero-filled shard of `type`. Throws MismatchError if T does not store type.dtype.
  DistArray(Context& ctx, Type type) : ctx_(&ctx), type_(std::move(type)) {
    check_dtype();
    local_.assign(static_cast<std::size_t>(ctx.local_elements(type_)), T{});
  }
  // Takes `local` as this rank's shard; its size must be the shard's (MismatchError).
  DistArray(Context& ctx, Type type, std::vector<T> local) : ctx_(&ctx), type_(std::move(type)), local_(std::move(local)) {
    check_dtype();
    if (static_cast<std::int64_t>(local_.size()) != ctx.local_elements(type_))
      throw MismatchError(fmt::format("a shard of {} elements for {}, whose block {} on this rank has {}",
                                      local_.size(), type_, ctx.local_block(type_), ctx.local_elements(type_)));
  }

  // Copies hold the same values and are not read by the original's reshards in flight.
  DistArray(const DistArray& o) : ctx_(o.ctx_), type_(o.type_), local_(o.local_) {}
  // Moving keeps the shard's storage: a reshard in flight reading it follows it here.
  DistArray(DistArray&&) noexcept = default;
  DistArray& operator=(const DistArray& o) {
    if (this != &o) {
      check_writable("assigning to it");
      ctx_ = o.ctx_, type_ = o.type_, local_ = o.local_;
    }
    return *this;
  }
  DistArray& operator=(DistArray&& o) {
    if (this != &o) {
      check_writable("assigning to it");
      ctx_ = o.ctx_, type_ = std::move(o.type_), local_ = std::move(o.local_), readers_ = std::move(o.readers_);
    }
    return *this;
  }
  // Finishes an asynchronous reshard still reading the shard before the shard is freed.
  ~DistArray() {
    for (auto& w : readers_)
      if (auto r = w.lock(); r && !r->done()) {
        try {
          r->finish();
        } catch (const std::exception& e) {  // a destructor cannot throw, and the data must not be freed
          std::fprintf(stderr, "reshard: a DistArray destroyed while read by a failing reshard: %s\n", e.what());
          std::terminate();
        }
      }
  }

  const Type& type() const { return type_; }
  Context& context() const { return *ctx_; }
  Box block() const { return ctx_->local_block(type_); }
  // Writable view of the shard: MismatchError while an asynchronous reshard reads it.
  std::span<T> local() {
    check_writable("writing its shard (use std::as_const(a).local() to read)");
    return local_;
  }
  std::span<const T> local() const { return local_; }
  // Gives up the shard (the array is left empty).
  std::vector<T> release() && {
    check_writable("releasing its shard");
    return std::move(local_);
  }
  // Whether an asynchronous reshard reads this array (its handle neither waited for nor dropped).
  bool in_flight() const {
    for (const auto& w : readers_)
      if (auto r = w.lock(); r && !r->done()) return true;
    return false;
  }
  // Registers an asynchronous reshard that reads the shard until it is done (dist_batch.hpp).
  void add_reader(std::weak_ptr<detail::ShardReader> r) const {
    std::erase_if(readers_, [](const auto& w) {
      auto p = w.lock();
      return !p || p->done();
    });
    readers_.push_back(std::move(r));
  }

  // A new array holding the same logical value with type `dst`. Collective.
  DistArray reshard_to(const Type& dst) const {
    DistArray r(*ctx_, dst);
    ctx_->reshard(*ctx_->plan(type_, dst), local_.data(), local_.size() * sizeof(T), r.local_.data(),
                  r.local_.size() * sizeof(T));
    return r;
  }
  // Same, replacing this array's shard and type (the old shard is freed after the call).
  void reshard(const Type& dst) {
    check_writable("resharding it in place");
    *this = reshard_to(dst);
  }
  // Reshards into `out`, an array of the target type whose shard is overwritten in place: no
  // allocation, for loops that reshard every step. `out` must live on the same Context and be
  // another array (MismatchError, on the calling rank, before anything moves). Collective.
  void reshard_into(DistArray& out) const {
    if (&out == this) throw MismatchError("reshard_into: the output array is the input array");
    if (out.ctx_ != ctx_) throw MismatchError("reshard_into: the output array lives on another Context");
    out.check_writable("resharding into it");
    ctx_->reshard(*ctx_->plan(type_, out.type_), local_.data(), local_.size() * sizeof(T), out.local_.data(),
                  out.local_.size() * sizeof(T));
  }

 private:
  void check_writable(const char* what) const {
    if (in_flight())
      throw MismatchError(fmt::format("a DistArray of {} is read by an asynchronous reshard in flight: wait() for it "
                                      "before {}",
                                      type_, what));
  }
  void check_dtype() const {
    if (!stores<T>(type_.dtype))
      throw MismatchError(fmt::format("a DistArray of {}-byte elements cannot hold {} (type {})", sizeof(T),
                                      type_.dtype, type_));
  }

  Context* ctx_;
  Type type_;
  std::vector<T> local_;
  mutable std::vector<std::weak_ptr<detail::ShardReader>> readers_;  // asynchronous reshards reading local_
};

}  // namespace reshard
