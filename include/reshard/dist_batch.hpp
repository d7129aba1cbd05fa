#pragma once
// DistArrays across meshes and in batches, over an XContext (xcontext.hpp, docs/batched.md):
// what a training loop calls to move its weights to another mesh, or many small tensors at once.
//
//   reshard::XContext x(Mesh::parse("fsdp=2,tp=2@0-3"), Mesh::parse("r=2,tp=2@4-7"));
//   std::vector<reshard::DistArray<float>> w = ...;              // on x.src_context()
//   std::vector<reshard::Type> serving = ...;                      // types on the target mesh
//   auto h = reshard::reshard_batch_async(x, w, serving);          // one plan, collective
//   ... compute, calling h.test() now and then ...
//   std::vector<reshard::DistArray<float>> replicas = h.wait();    // on x.dst_context()
//
// Inputs are DistArrays on the XContext's source mesh (on src_context(), or on any Context over
// the same mesh and communicator); outputs are new DistArrays on dst_context(), one per target
// type, in order. Every world rank of the XContext calls these functions (ranks on neither mesh
// pass arrays whose shards are empty, and get outputs with empty shards). All arrays of one
// batch have the same element type T; a batch of mixed dtypes goes through XContext's buffer
// API (xcontext.hpp), which takes any mix.
//
// Errors, before anything moves, nothing written, on every rank: an input on another mesh, a
// target type whose dtype T does not store, a target of another global shape or dtype than its
// input, as many inputs as targets or not (MismatchError); a memory cap too small (Error).
//
// Asynchronous: the handle owns the output arrays until wait() gives them (so they cannot be
// read half-written); the inputs stay where they are, readable, and refuse writes until wait()
// is called or the handle dropped (dist_array.hpp: program order, the same on every rank). Several handles may be in flight on one
// XContext, started in the same order on every rank. Dropping an unfinished handle finishes the
// reshard (collectively, like wait()). The XContext must outlive its handles.
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "reshard/dist_array.hpp"
#include "reshard/error.hpp"
#include "reshard/xcontext.hpp"

namespace reshard {

namespace detail {

// One asynchronous reshard of DistArrays: the XHandle and the outputs it writes.
template <class T>
struct DistFlight final : ShardReader {
  std::shared_ptr<const XPlan> plan;
  std::vector<DistArray<T>> out;
  std::optional<XHandle> handle;  // (an XHandle's default constructor needs its State complete)
  bool released = false;  // wait() was called: the inputs may be written again
  bool taken = false;     // the outputs were given

  bool done() const override { return released; }
  bool test() { return !handle || handle->test(); }
  bool finished() const { return !handle || handle->done(); }
  void finish() override {
    if (handle) handle->wait();
    released = true;
  }
};

// The checks that need no communication, the same on every rank of an SPMD program.
template <class T>
std::vector<XArray> batch_arrays(XContext& x, std::span<const DistArray<T>* const> in, std::span<const Type> dst,
                                 std::span<const std::string> names) {
  if (in.size() != dst.size())
    throw MismatchError(fmt::format("a batch of {} input arrays and {} target types", in.size(), dst.size()));
  if (!names.empty() && names.size() != in.size())
    throw MismatchError(fmt::format("a batch of {} arrays with {} names", in.size(), names.size()));
  std::vector<XArray> arrays;
  arrays.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const DistArray<T>& a = *in[i];
    const std::string name = names.empty() ? fmt::format("{}", i) : names[i];
    // A Context over the source mesh gives this rank the same shard as src_context() does.
    const Context& c = a.context();
    if (&c != &x.src_context() && !(c.mesh() == x.src_mesh() && c.device() == x.src_device()))
      throw MismatchError(fmt::format("array '{}' ({}) lives on mesh {}, not on the source mesh {} of this XContext",
                                      name, a.type(), c.mesh(), x.src_mesh()));
    if (!stores<T>(dst[i].dtype))
      throw MismatchError(fmt::format("array '{}': the target type {} is not {}, the input's dtype", name, dst[i],
                                      a.type().dtype));
    arrays.push_back({name, a.type(), dst[i]});
  }
  return arrays;
}

template <class T>
std::shared_ptr<DistFlight<T>> start_batch(XContext& x, std::span<const DistArray<T>* const> in,
                                           std::span<const Type> dst, std::span<const std::string> names) {
  auto f = std::make_shared<DistFlight<T>>();
  f->plan = x.plan(batch_arrays<T>(x, in, dst, names));  // MismatchError: shapes, dtypes, axes
  f->out.reserve(dst.size());
  for (const Type& t : dst) f->out.emplace_back(x.dst_context(), t);
  std::vector<ConstBuffer> cin;
  std::vector<MutBuffer> mout;
  for (const DistArray<T>* a : in) cin.push_back({a->local().data(), a->local().size_bytes()});
  for (DistArray<T>& o : f->out) mout.push_back({o.local().data(), o.local().size_bytes()});
  f->handle.emplace(x.reshard_async(*f->plan, cin, mout));  // agrees over every rank before anything moves
  for (const DistArray<T>* a : in) a->add_reader(f);
  return f;
}

template <class T>
std::vector<const DistArray<T>*> pointers(const std::vector<DistArray<T>>& in) {
  std::vector<const DistArray<T>*> p;
  p.reserve(in.size());
  for (const DistArray<T>& a : in) p.push_back(&a);
  return p;
}

}  // namespace detail

// An asynchronous reshard of DistArrays in flight. Move-only.
template <class T>
class DistHandle {
 public:
  DistHandle() = default;
  explicit DistHandle(std::shared_ptr<detail::DistFlight<T>> f) : f_(std::move(f)) {}

  // Advances without blocking (unpacks what arrived, posts the next phase); true once done.
  bool test() { return !f_ || f_->test(); }
  bool done() const { return !f_ || f_->finished(); }
  // Blocks until done and gives the outputs, in the order of the targets. Once (Error after).
  std::vector<DistArray<T>> wait() {
    if (!f_ || f_->taken) throw Error("DistHandle::wait(): the outputs were already taken (or the handle is empty)");
    f_->finish();
    f_->taken = true;
    return std::move(f_->out);
  }
  // The plan it runs (figures: plan().stats).
  const XPlan& plan() const { return *f_->plan; }

 private:
  std::shared_ptr<detail::DistFlight<T>> f_;
};

// ---- batches: inputs on the source mesh, one target type each ----------------------------

template <class T>
DistHandle<T> reshard_batch_async(XContext& x, std::span<const DistArray<T>* const> in, std::span<const Type> dst,
                                  std::span<const std::string> names = {}) {
  return DistHandle<T>(detail::start_batch<T>(x, in, dst, names));
}
template <class T>
DistHandle<T> reshard_batch_async(XContext& x, const std::vector<DistArray<T>>& in, const std::vector<Type>& dst,
                                  const std::vector<std::string>& names = {}) {
  const auto p = detail::pointers(in);
  return reshard_batch_async<T>(x, std::span<const DistArray<T>* const>(p), dst, names);
}
// One batched plan, run to the end. Collective over the XContext's world.
template <class T>
std::vector<DistArray<T>> reshard_batch(XContext& x, std::span<const DistArray<T>* const> in,
                                        std::span<const Type> dst, std::span<const std::string> names = {}) {
  return reshard_batch_async<T>(x, in, dst, names).wait();
}
template <class T>
std::vector<DistArray<T>> reshard_batch(XContext& x, const std::vector<DistArray<T>>& in, const std::vector<Type>& dst,
                                        const std::vector<std::string>& names = {}) {
  return reshard_batch_async<T>(x, in, dst, names).wait();
}

// Into arrays the caller keeps (no allocation, for loops that move the same arrays every
// step): `out[i]` must be on the target mesh, of type dst of the batch, and not an input.
template <class T>
void reshard_batch_into(XContext& x, std::span<const DistArray<T>* const> in, std::span<DistArray<T>* const> out) {
  if (in.size() != out.size())
    throw MismatchError(fmt::format("a batch of {} input arrays and {} output arrays", in.size(), out.size()));
  std::vector<Type> dst;
  for (std::size_t i = 0; i < out.size(); ++i) {
    const Context& c = out[i]->context();
    if (&c != &x.dst_context() && !(c.mesh() == x.dst_mesh() && c.device() == x.dst_device()))
      throw MismatchError(fmt::format("output array {} ({}) lives on mesh {}, not on the target mesh {} of this XContext",
                                      i, out[i]->type(), c.mesh(), x.dst_mesh()));
    for (const DistArray<T>* a : in)
      if (a == out[i]) throw MismatchError(fmt::format("output array {} is also an input of the batch", i));
    dst.push_back(out[i]->type());
  }
  const auto plan = x.plan(detail::batch_arrays<T>(x, in, dst, {}));
  std::vector<ConstBuffer> cin;
  std::vector<MutBuffer> mout;
  for (const DistArray<T>* a : in) cin.push_back({a->local().data(), a->local().size_bytes()});
  for (DistArray<T>* o : out) {
    const std::span<T> s = o->local();  // MismatchError while a reshard in flight reads it
    mout.push_back({s.data(), s.size_bytes()});
  }
  x.reshard(*plan, cin, mout);
}
template <class T>
void reshard_batch_into(XContext& x, const std::vector<DistArray<T>>& in, std::vector<DistArray<T>>& out) {
  const auto p = detail::pointers(in);
  std::vector<DistArray<T>*> q;
  for (DistArray<T>& o : out) q.push_back(&o);
  reshard_batch_into<T>(x, std::span<const DistArray<T>* const>(p), std::span<DistArray<T>* const>(q));
}

// ---- one array from the source mesh to a type on the target mesh ---------------------------

template <class T>
DistHandle<T> reshard_async(XContext& x, const DistArray<T>& a, const Type& dst) {
  const DistArray<T>* p = &a;
  return reshard_batch_async<T>(x, std::span<const DistArray<T>* const>(&p, 1), std::span<const Type>(&dst, 1));
}
template <class T>
DistArray<T> reshard_to(XContext& x, const DistArray<T>& a, const Type& dst) {
  return std::move(reshard_async<T>(x, a, dst).wait().front());
}

}  // namespace reshard
