// reshard._core: the C++ API seen from Python (docs/python.md). Mesh, Type and Plan are values;
// _Context wraps reshard::Context (MPI). The Pythonic surface (reshard.Context, interop) is
// pure Python on top of these names.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include "arrays.hpp"
#include "plan_json.hpp"
#include "xplan_json.hpp"
#include "reshard/error.hpp"
#include "reshard/simulate.hpp"
#include "reshard/synth.hpp"
#include "reshard/version.hpp"
#include "reshard/xplan.hpp"
#ifdef RESHARD_PYTHON_MPI
#include <algorithm>

#include <mpi.h>

#include "reshard/context.hpp"
#include "reshard/xcontext.hpp"
#endif

namespace nb = nanobind;
using namespace nb::literals;

namespace reshard::python {
namespace {

// Exception classes, created once at import: Error(RuntimeError), ParseError(Error, ValueError),
// MismatchError(Error, ValueError).
PyObject* g_error = nullptr;
PyObject* g_parse_error = nullptr;
PyObject* g_mismatch_error = nullptr;

void raise_parse_error(const ParseError& e) {
  nb::object inst = nb::steal(PyObject_CallFunction(g_parse_error, "s", e.what()));
  if (!inst.is_valid()) return;  // the Python error from the call stays set
  inst.attr("position") = e.position();
  inst.attr("text") = e.text();
  PyErr_SetObject(g_parse_error, inst.ptr());
}

void translate(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const ParseError& e) {
    raise_parse_error(e);
  } catch (const MismatchError& e) {
    PyErr_SetString(g_mismatch_error, e.what());
  } catch (const Error& e) {
    PyErr_SetString(g_error, e.what());
  }
}

// A Type with the mesh it was checked against: what Python calls reshard.Type. Immutable.
struct MeshType {
  Type type;
  Mesh mesh;
  std::string text;  // type.to_string(), kept for str() and hashing

  MeshType(Type t, Mesh m) : type(std::move(t)), mesh(std::move(m)), text(type.to_string()) {}
  bool operator==(const MeshType& o) const { return type == o.type && mesh == o.mesh; }
};

MeshType parse_type(std::string_view text, const Mesh& mesh) {
  try {
    return MeshType(Type::parse(text, mesh), mesh);
  } catch (const ParseError&) {
    throw;
  } catch (const Error& e) {
    // Semantic errors found after parsing (axis not in the mesh, used twice) are errors in the
    // text too: Python sees one ValueError kind with a position for all of them.
    throw ParseError(e.what(), std::string(text), 0);
  }
}

std::vector<std::pair<std::int64_t, std::int64_t>> intervals(const Box& b) {
  std::vector<std::pair<std::int64_t, std::int64_t>> r;
  r.reserve(b.dims.size());
  for (const Interval& i : b.dims) r.emplace_back(i.lo, i.hi);
  return r;
}

nb::tuple shape_tuple(const std::vector<std::int64_t>& s) {
  nb::list l;
  for (std::int64_t e : s) l.append(e);
  return nb::tuple(l);
}

// A plan with what Python asks of it: the naive plan's figures (for str() and stats, as the
// CLI prints them), computed on first use.
struct PlanHandle {
  std::shared_ptr<const Plan> plan;
  SynthOptions opts;
  std::optional<Plan> naive;
  std::optional<SimResult> sim;

  const Plan& naive_plan() {
    if (!naive) {
      SynthOptions o = opts;
      o.strategy = Strategy::naive;
      naive = synthesize(plan->mesh, plan->src, plan->dst, o);
    }
    return *naive;
  }
  nlohmann::json json() {
    nlohmann::json j = cli::plan_to_json(*plan);
    const Plan& n = naive_plan();
    j["naive"] = {{"bytes_recv_max", n.stats.bytes_recv_max},
                  {"max_intermediate_bytes", n.stats.max_intermediate_bytes},
                  {"steps", n.steps.size()}};
    if (sim) {
      j["verified"] = sim->ok;
      if (!sim->ok) j["verify_error"] = sim->error;
    }
    return j;
  }
  std::string str() {
    const Plan& n = naive_plan();
    std::string s = fmt::format("{}", *plan);
    s += fmt::format("  naive plan (gather all, slice): received {} B, largest local array {} B, {} steps\n",
                     n.stats.bytes_recv_max, n.stats.max_intermediate_bytes, n.steps.size());
    if (sim) s += fmt::format("  verified on the simulator: {}\n", sim->ok ? "yes" : "NO: " + sim->error);
    return s;
  }
};

nb::object json_to_python(const nlohmann::json& j) {
  return nb::module_::import_("json").attr("loads")(j.dump());
}

SynthOptions make_options(const std::string& topology, const std::string& strategy) {
  SynthOptions o;
  o.strategy = strategy_from_name(strategy);
  if (!topology.empty()) o.topology = Topology::parse(topology);
  return o;
}

void check_same_mesh(const Mesh& mesh, const MeshType& t, const char* what) {
  if (!(t.mesh == mesh))
    throw MismatchError(fmt::format("the {} type {} lives on mesh {}, not on mesh {}", what, t.text, t.mesh, mesh));
}

PlanHandle make_plan(const Mesh& mesh, const MeshType& src, const MeshType& dst, const std::string& topology,
                 const std::string& strategy, bool verify) {
  check_same_mesh(mesh, src, "source");
  check_same_mesh(mesh, dst, "target");
  PlanHandle p;
  p.opts = make_options(topology, strategy);
  p.plan = std::make_shared<const Plan>(synthesize(mesh, src.type, dst.type, p.opts));
  if (verify) p.sim = simulate(*p.plan);
  return p;
}


// ---- cross-mesh and batched plans (docs/python.md "Batches and other meshes") -----------

// A batched or cross-mesh plan with what Python asks of it.
struct BatchPlanHandle {
  std::shared_ptr<const XPlan> plan;
  std::optional<XSimResult> sim;

  nlohmann::json json() const {
    nlohmann::json j = cli::xplan_to_json(*plan, true);
    if (sim) {
      j["verified"] = sim->ok;
      if (!sim->ok) j["verify_error"] = sim->error;
    }
    return j;
  }
};

// (name, source, target) triples as XArrays; the types must live on the plan's meshes.
std::vector<XArray> x_arrays(const Mesh& src_mesh, const Mesh& dst_mesh,
                             const std::vector<std::tuple<std::string, MeshType, MeshType>>& arrays) {
  std::vector<XArray> r;
  for (const auto& [name, s, d] : arrays) {
    if (!(s.mesh == src_mesh))
      throw MismatchError(fmt::format("array '{}': the source type {} lives on mesh {}, not on the source mesh {}",
                                      name, s.text, s.mesh, src_mesh));
    if (!(d.mesh == dst_mesh))
      throw MismatchError(fmt::format("array '{}': the target type {} lives on mesh {}, not on the target mesh {}",
                                      name, d.text, d.mesh, dst_mesh));
    r.push_back({name, s.type, d.type});
  }
  return r;
}

BatchPlanHandle make_batch_plan(const Mesh& src_mesh, const Mesh& dst_mesh,
                                const std::vector<std::tuple<std::string, MeshType, MeshType>>& arrays,
                                std::int64_t memory_cap, bool verify) {
  XOptions o;
  o.memory_cap = memory_cap;
  BatchPlanHandle p;
  p.plan = std::make_shared<const XPlan>(plan_batch(src_mesh, dst_mesh, x_arrays(src_mesh, dst_mesh, arrays), o));
  if (verify) p.sim = simulate_batch(*p.plan);
  return p;
}

#ifdef RESHARD_PYTHON_MPI
bool g_we_initialized_mpi = false;

bool mpi_finalized() {
  int f = 0;
  MPI_Finalized(&f);
  return f != 0;
}

// Initialises MPI if nobody has (mpi4py does when imported first). Returns whether it did.
bool mpi_init() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return false;
  if (mpi_finalized()) throw Error("MPI was already finalized; reshard cannot start it again");
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    throw Error("MPI_Init_thread failed");
  g_we_initialized_mpi = true;
  return true;
}

// The reshard::Context behind reshard.Context, with a small cache of the plans of recent
// calls found by comparing types (the Context's own cache formats a key per lookup).
class ContextHandle {
 public:
  ContextHandle(const Mesh& mesh, std::uintptr_t comm_address, const std::string& topology, const std::string& strategy,
            std::optional<double> timeout_s, bool check_every_call)
      : opts_(make_options(topology, strategy)), check_every_call_(check_every_call) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized || mpi_finalized()) throw Error("reshard.Context needs MPI to be initialised (and not finalized)");
    MPI_Comm comm = comm_address ? *reinterpret_cast<MPI_Comm*>(comm_address) : MPI_COMM_WORLD;
    if (comm == MPI_COMM_NULL) throw Error("reshard.Context: the communicator is MPI_COMM_NULL");
    ExecOptions exec;
    exec.check_every_call = check_every_call;
    if (timeout_s) exec.timeout_s = *timeout_s;
    nb::gil_scoped_release release;  // collective: other Python threads may run meanwhile
    ctx_ = std::make_unique<Context>(mesh, comm, opts_, exec);
  }
  ~ContextHandle() { close(); }

  // Frees the group communicators (collective over the participants). After MPI_Finalize the
  // handles are dead: the Context is then left unfreed rather than touching MPI again.
  void close() {
    if (!ctx_) return;
    if (mpi_finalized()) {
      (void)ctx_.release();
      return;
    }
    ctx_.reset();
  }

  bool closed() const { return !ctx_; }
  Context& ctx() {
    if (!ctx_) throw Error("this reshard.Context is closed");
    return *ctx_;
  }

  const Mesh& mesh() { return ctx().mesh(); }

  std::shared_ptr<const Plan> plan_for(const MeshType& src, const MeshType& dst) {
    const Mesh& m = mesh();
    if (src.mesh == m && dst.mesh == m)
      for (const Recent& r : recent_)
        if (r.plan->src == src.type && r.plan->dst == dst.type) return r.plan;
    check_same_mesh(m, src, "source");
    check_same_mesh(m, dst, "target");
    auto p = ctx().plan(src.type, dst.type);
    if (recent_.size() >= 16) recent_.pop_back();
    recent_.insert(recent_.begin(), Recent{p});
    return p;
  }

  // Checks both arrays against the plan's types on this rank, then runs it (collective).
  void run(const Plan& plan, const ArrayRef& in, const ArrayRef& out) {
    Context& c = ctx();
    const int dev = c.device();
    std::vector<std::int64_t> src_shape, dst_shape;
    if (dev >= 0) {
      src_shape = plan.src.local_shape(c.mesh(), dev);
      dst_shape = plan.dst.local_shape(c.mesh(), dev);
    } else {
      src_shape.assign(plan.src.dims.size(), 0);
      dst_shape.assign(plan.dst.dims.size(), 0);
    }
    Shard a, b;
    std::string err;
    try {
      a = check_shard("input", in.dtype, in.ndim, in.shape, in.data, plan.src, src_shape);
      b = check_shard("output", out.dtype, out.ndim, out.shape, out.data, plan.dst, dst_shape);
    } catch (const MismatchError& e) {
      err = e.what();
    }
    nb::gil_scoped_release release;
    if (!err.empty()) {
      // The other devices are about to check, collectively, that all agree on the plan: join
      // that check with this device's error, so that every device raises instead of waiting.
      if (c.participates() && check_every_call_)
        check_agreement(c.communicator()->world(), "the plan", 0, "a call with a bad array", err);
      throw MismatchError(err);
    }
    c.reshard(plan, a.data, a.bytes, const_cast<void*>(b.data), b.bytes);
  }

  // Any array kind: the buffer protocol when both arrays export a C-contiguous one (NumPy),
  // else nanobind's ndarray (DLPack; a non-contiguous input is copied first).
  void run_any(const Plan& plan, nb::handle in, nb::handle out) {
    BufferView bi, bo;
    if (bi.acquire(in.ptr(), false) && bo.acquire(out.ptr(), true)) return run(plan, bi.ref(), bo.ref());
    InArray a;
    OutArray b;
    if (!nb::try_cast(in, a, true))
      throw MismatchError(fmt::format("the input ({}) is not a host array (buffer protocol or DLPack)",
                                      nb::inst_name(in).c_str()));
    if (!nb::try_cast(out, b, false))
      throw MismatchError(fmt::format("the output ({}) is not a writable, C-contiguous host array",
                                      nb::inst_name(out).c_str()));
    run(plan, ArrayRef{a.dtype(), a.ndim(), a.shape_ptr(), a.data()},
        ArrayRef{b.dtype(), b.ndim(), b.shape_ptr(), b.data()});
  }

  std::vector<std::int64_t> local_shape(const MeshType& t) {
    Context& c = ctx();
    check_same_mesh(c.mesh(), t, "");
    if (!c.participates()) return std::vector<std::int64_t>(t.type.dims.size(), 0);
    return t.type.local_shape(c.mesh(), c.device());
  }

  SynthOptions opts_;

 private:
  bool check_every_call_ = true;
  struct Recent {
    std::shared_ptr<const Plan> plan;
  };
  std::unique_ptr<Context> ctx_;
  std::vector<Recent> recent_;
};

// The arrays of one cross-mesh call, held for as long as the call reads or writes them: the
// Python objects, their exported buffers (which keep NumPy from resizing them) and nanobind's
// views (a non-contiguous input is copied once, and the copy must outlive the call).
struct HeldArrays {
  std::vector<nb::object> objects;
  std::vector<std::unique_ptr<BufferView>> views;
  std::vector<InArray> ins;
  std::vector<OutArray> outs;

  ArrayRef hold(nb::handle x, bool writable, const std::string& what) {
    objects.push_back(nb::borrow(x));
    auto v = std::make_unique<BufferView>();
    if (v->acquire(x.ptr(), writable)) {
      views.push_back(std::move(v));
      return views.back()->ref();
    }
    if (!writable) {
      InArray a;
      if (!nb::try_cast(x, a, true))
        throw MismatchError(fmt::format("{} ({}) is not a host array (buffer protocol or DLPack)", what,
                                        nb::inst_name(x).c_str()));
      ins.push_back(a);
      return ArrayRef{a.dtype(), a.ndim(), a.shape_ptr(), a.data()};
    }
    OutArray b;
    if (!nb::try_cast(x, b, false))
      throw MismatchError(fmt::format("{} ({}) is not a writable, C-contiguous host array", what,
                                      nb::inst_name(x).c_str()));
    outs.push_back(b);
    return ArrayRef{b.dtype(), b.ndim(), b.shape_ptr(), b.data()};
  }
};

// One asynchronous cross-mesh reshard: the XHandle and the arrays it reads and writes.
struct XHandleBox {
  std::optional<XHandle> h;  // (an XHandle's default constructor needs its State complete)
  HeldArrays arrays;
  nb::object outputs;  // what wait() gives back

  bool done() const { return !h || h->done(); }
  bool test() {
    nb::gil_scoped_release release;
    return !h || h->test();
  }
  void wait() {
    nb::gil_scoped_release release;
    if (h) h->wait();
  }
  ~XHandleBox() {
    if (!done()) {  // finishes the reshard before the arrays are let go (as XHandle would)
      nb::gil_scoped_release release;
      h->wait();
    }
  }
};

// The reshard::XContext behind reshard.XContext.
class XContextHandle {
 public:
  XContextHandle(const Mesh& src, const Mesh& dst, std::uintptr_t comm_address, std::int64_t memory_cap,
                 std::optional<double> timeout_s) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized || mpi_finalized()) throw Error("reshard.XContext needs MPI to be initialised (and not finalized)");
    MPI_Comm comm = comm_address ? *reinterpret_cast<MPI_Comm*>(comm_address) : MPI_COMM_WORLD;
    if (comm == MPI_COMM_NULL) throw Error("reshard.XContext: the communicator is MPI_COMM_NULL");
    XOptions o;
    o.memory_cap = memory_cap;
    ExecOptions exec;
    if (timeout_s) exec.timeout_s = *timeout_s;
    nb::gil_scoped_release release;
    x_ = std::make_unique<XContext>(src, dst, comm, o, exec);
  }
  ~XContextHandle() { close(); }
  void close() {
    if (!x_) return;
    if (mpi_finalized()) {
      (void)x_.release();
      return;
    }
    x_.reset();
  }
  bool closed() const { return !x_; }
  XContext& x() {
    if (!x_) throw Error("this reshard.XContext is closed");
    return *x_;
  }

  BatchPlanHandle plan(const std::vector<std::tuple<std::string, MeshType, MeshType>>& arrays) {
    XContext& c = x();
    BatchPlanHandle p;
    p.plan = c.plan(x_arrays(c.src_mesh(), c.dst_mesh(), arrays));
    return p;
  }

  // This rank's local shape of array a's source (target) type; zeros off the mesh.
  std::vector<std::int64_t> local_shape(const Type& t, const Mesh& mesh, int device) const {
    if (device < 0) return std::vector<std::int64_t>(t.dims.size(), 0);
    return t.local_shape(mesh.without_ranks(), device);
  }

  // Checks the arrays against the plan on this rank and starts it. A problem found here joins
  // the XContext's agreement, so every rank raises MismatchError and nothing moves.
  std::unique_ptr<XHandleBox> start(const BatchPlanHandle& ph, nb::sequence ins, nb::sequence outs) {
    XContext& c = x();
    const XPlan& p = *ph.plan;
    auto box = std::make_unique<XHandleBox>();
    box->outputs = nb::borrow(outs);
    std::vector<ConstBuffer> cin;
    std::vector<MutBuffer> mout;
    std::string err;
    try {
      const std::size_t n = p.arrays.size();
      if (nb::len(ins) != n || nb::len(outs) != n)
        throw MismatchError(fmt::format("the plan has {} arrays but {} inputs and {} outputs were passed", n,
                                        nb::len(ins), nb::len(outs)));
      for (std::size_t i = 0; i < n; ++i) {
        const XArray& a = p.arrays[i];
        const std::string name = a.name.empty() ? fmt::format("{}", i) : a.name;
        try {
          ArrayRef r = box->arrays.hold(ins[i], false, "the input");
          Shard s = check_shard("input", r.dtype, r.ndim, r.shape, r.data, a.src,
                                local_shape(a.src, p.src_mesh, c.src_device()));
          cin.push_back({s.data, s.bytes});
          ArrayRef w = box->arrays.hold(outs[i], true, "the output");
          Shard d = check_shard("output", w.dtype, w.ndim, w.shape, w.data, a.dst,
                                local_shape(a.dst, p.dst_mesh, c.dst_device()));
          mout.push_back({const_cast<void*>(d.data), d.bytes});
        } catch (const MismatchError& e) {
          throw MismatchError(fmt::format("array '{}': {}", name, e.what()));
        }
      }
    } catch (const MismatchError& e) {
      err = e.what();
      cin.assign(p.arrays.size(), {});
      mout.assign(p.arrays.size(), {});
    }
    nb::gil_scoped_release release;
    box->h.emplace(c.reshard_async(p, cin, mout, err));
    return box;
  }

  std::int64_t count_index_mismatches(const BatchPlanHandle& ph, std::size_t i, nb::handle out) {
    XContext& c = x();
    const XPlan& p = *ph.plan;
    if (i >= p.arrays.size()) throw Error(fmt::format("array {} of a plan of {}", i, p.arrays.size()));
    HeldArrays h;
    ArrayRef r = h.hold(out, false, "the array checked");
    Shard s = check_shard("array checked", r.dtype, r.ndim, r.shape, r.data, p.arrays[i].dst,
                          local_shape(p.arrays[i].dst, p.dst_mesh, c.dst_device()));
    nb::gil_scoped_release release;
    return c.count_index_mismatches(p.arrays[i], s.data, s.bytes);
  }

  void fill_index_src(const MeshType& t, OutArray& out) {
    XContext& c = x();
    if (!(t.mesh == c.src_mesh()))
      throw MismatchError(fmt::format("the type {} lives on mesh {}, not on the source mesh {}", t.text, t.mesh,
                                      c.src_mesh()));
    check_shard("output", out.dtype(), out.ndim(), out.shape_ptr(), out.data(), t.type,
                local_shape(t.type, c.src_mesh(), c.src_device()));
    c.src_context().fill_index(t.type, out.data());
  }

 private:
  std::unique_ptr<XContext> x_;
};
#endif

}  // namespace
}  // namespace reshard::python

NB_MODULE(_core, m) {
  using namespace reshard;
  using namespace reshard::python;
  m.doc() = "reshard's C++ core: meshes, types, plans and the MPI context (see the reshard package)";
  m.attr("__version__") = reshard::version;  // project(reshard VERSION ...), as `reshard --version`
#ifdef RESHARD_PYTHON_MPI
  m.attr("has_mpi") = true;
#else
  m.attr("has_mpi") = false;
#endif

  g_error = PyErr_NewExceptionWithDoc("reshard.Error", "Base class of every error reshard raises.",
                                      PyExc_RuntimeError, nullptr);
  nb::object parse_bases = nb::make_tuple(nb::handle(g_error), nb::handle(PyExc_ValueError));
  g_parse_error = PyErr_NewExceptionWithDoc(
      "reshard.ParseError", "Malformed or invalid text; .position is the 0-based offset in .text.",
      parse_bases.ptr(), nullptr);
  nb::object mismatch_bases = nb::make_tuple(nb::handle(g_error), nb::handle(PyExc_ValueError));
  g_mismatch_error = PyErr_NewExceptionWithDoc(
      "reshard.MismatchError",
      "Things that do not fit together: source and target types, a type and a mesh, an array and a type.",
      mismatch_bases.ptr(), nullptr);
  m.attr("Error") = nb::handle(g_error);
  m.attr("ParseError") = nb::handle(g_parse_error);
  m.attr("MismatchError") = nb::handle(g_mismatch_error);
  nb::register_exception_translator(translate);

  nb::class_<Mesh>(m, "Mesh", "A named device mesh, e.g. Mesh('x=2,y=4'); devices numbered row-major.")
      .def("__init__", [](Mesh* self, std::string_view text) { new (self) Mesh(Mesh::parse(text)); }, "text"_a,
           "Parses mesh text; raises ParseError (a ValueError) naming the problem and position.")
      .def_prop_ro("axes",
                   [](const Mesh& me) {
                     std::vector<std::pair<std::string, int>> r;
                     for (const Axis& a : me.axes()) r.emplace_back(a.name, a.size);
                     return r;
                   },
                   "(name, size) per axis, major first.")
      .def_prop_ro("axis_names",
                   [](const Mesh& me) {
                     std::vector<std::string> r;
                     for (const Axis& a : me.axes()) r.push_back(a.name);
                     return r;
                   })
      .def_prop_ro("shape",
                   [](const Mesh& me) {
                     std::vector<std::int64_t> s;
                     for (const Axis& a : me.axes()) s.push_back(a.size);
                     return shape_tuple(s);
                   })
      .def_prop_ro("num_devices", &Mesh::num_devices)
      .def_prop_ro("ranks",
                   [](const Mesh& me) {
                     std::vector<int> r;
                     for (int d = 0; d < me.num_devices(); ++d) r.push_back(me.rank_of(d));
                     return r;
                   },
                   "The communicator rank of each device (Mesh('tp=2@4,6').ranks == [4, 6]).")
      .def("without_ranks", &Mesh::without_ranks, "The same axes on the first ranks.")
      .def("device_of", &Mesh::device_of, "rank"_a, "The device on communicator rank `rank`, or -1.")
      .def("axis_size", &Mesh::axis_size, "name"_a)
      .def("axis_index", &Mesh::axis_index, "name"_a, "Index of the axis, or -1.")
      .def("coords",
           [](const Mesh& me, int device) {
             if (device < 0 || device >= me.num_devices())
               throw Error(fmt::format("device {} is not a device of mesh {}", device, me));
             std::vector<std::int64_t> c;
             for (int a = 0; a < me.num_axes(); ++a) c.push_back(me.coord(device, a));
             return shape_tuple(c);
           },
           "device"_a, "The device's coordinate on every axis.")
      .def("__str__", &Mesh::to_string)
      .def("__repr__", [](const Mesh& me) { return fmt::format("reshard.Mesh('{}')", me); })
      .def("__eq__", [](const Mesh& a, const Mesh& b) { return a == b; }, nb::is_operator())
      .def("__ne__", [](const Mesh& a, const Mesh& b) { return !(a == b); }, nb::is_operator())
      .def("__hash__", [](const Mesh& me) { return nb::hash(nb::str(me.to_string().c_str())); });

  nb::class_<MeshType>(m, "Type", "A distributed array type on a mesh, e.g. Type('f32[30{x,y},7]', mesh).")
      .def("__init__", [](MeshType* self, std::string_view text, const Mesh& mesh) { new (self) MeshType(parse_type(text, mesh)); },
           "text"_a, "mesh"_a,
           "Parses and checks the type on the mesh; raises ParseError (a ValueError) with the position.")
      .def_prop_ro("mesh", [](const MeshType& t) { return t.mesh; })
      .def_prop_ro("dtype", [](const MeshType& t) { return std::string(name_of(t.type.dtype)); })
      .def_prop_ro("itemsize", [](const MeshType& t) { return size_of(t.type.dtype); })
      .def_prop_ro("shape", [](const MeshType& t) { return shape_tuple(t.type.global_shape()); }, "The global shape.")
      .def_prop_ro("ndim", [](const MeshType& t) { return t.type.rank(); })
      .def_prop_ro("dim_axes",
                   [](const MeshType& t) {
                     std::vector<std::vector<std::string>> r;
                     for (const Dim& d : t.type.dims) r.push_back(d.axes);
                     return r;
                   },
                   "The axes splitting each dim, major to minor.")
      .def_prop_ro("reduce_op",
                   [](const MeshType& t) -> std::optional<std::string> {
                     if (t.type.op == ReduceOp::none) return std::nullopt;
                     return std::string(name_of(t.type.op));
                   },
                   "'sum', 'max', 'min', 'prod' for a pending reduction, else None.")
      .def_prop_ro("reduce_axes", [](const MeshType& t) { return t.type.reduce_axes; })
      .def("block", [](const MeshType& t, int device) {
             if (device < 0 || device >= t.mesh.num_devices())
               throw Error(fmt::format("device {} is not a device of mesh {}", device, t.mesh));
             return intervals(t.type.block(t.mesh, device));
           },
           "device"_a, "The global block (lo, hi) per dim that the device holds.")
      .def("local_shape",
           [](const MeshType& t, int device) {
             if (device < 0 || device >= t.mesh.num_devices())
               throw Error(fmt::format("device {} is not a device of mesh {}", device, t.mesh));
             return shape_tuple(t.type.local_shape(t.mesh, device));
           },
           "device"_a)
      .def_prop_ro("max_local_bytes", [](const MeshType& t) { return t.type.max_local_bytes(t.mesh); })
      .def("__str__", [](const MeshType& t) { return t.text; })
      .def("__repr__", [](const MeshType& t) { return fmt::format("reshard.Type('{}', reshard.Mesh('{}'))", t.text, t.mesh); })
      .def("__eq__", [](const MeshType& a, const MeshType& b) { return a == b; }, nb::is_operator())
      .def("__ne__", [](const MeshType& a, const MeshType& b) { return !(a == b); }, nb::is_operator())
      .def("__hash__", [](const MeshType& t) { return nb::hash(nb::str((t.text + "@" + t.mesh.to_string()).c_str())); });

  nb::class_<PlanHandle>(m, "Plan", "A plan of typed steps from a source type to a target type.")
      .def_prop_ro("mesh", [](const PlanHandle& p) { return p.plan->mesh; })
      .def_prop_ro("src", [](const PlanHandle& p) { return MeshType(p.plan->src, p.plan->mesh); })
      .def_prop_ro("dst", [](const PlanHandle& p) { return MeshType(p.plan->dst, p.plan->mesh); })
      .def_prop_ro("strategy", [](const PlanHandle& p) { return p.plan->strategy; })
      .def_prop_ro("notes", [](const PlanHandle& p) { return p.plan->notes; })
      .def_prop_ro("steps", [](PlanHandle& p) { return json_to_python(p.json()["steps"]); },
                   "One dict per step: op, axes, dims, out_type, out_local_bytes, bytes_recv (and kind).")
      .def_prop_ro("stats",
                   [](PlanHandle& p) {
                     nlohmann::json j = p.json();
                     for (const char* k : {"mesh", "from", "to", "strategy", "steps", "notes"}) j.erase(k);
                     return json_to_python(j);
                   },
                   "Every figure of `reshard plan --json` (bytes, lower bound, naive plan, verified).")
      .def_prop_ro("verified",
                   [](const PlanHandle& p) -> std::optional<bool> {
                     if (!p.sim) return std::nullopt;
                     return p.sim->ok;
                   })
      .def("to_json", [](PlanHandle& p, int indent) { return p.json().dump(indent); }, "indent"_a = 2,
           "The JSON object `reshard plan --json` prints.")
      .def("__str__", [](PlanHandle& p) { return p.str(); })
      .def("__repr__", [](const PlanHandle& p) {
        return fmt::format("<reshard.Plan {} -> {} on {}: {} steps>", p.plan->src, p.plan->dst, p.plan->mesh,
                           p.plan->steps.size());
      });

  m.def("plan", &make_plan, "mesh"_a, "src"_a, "dst"_a, "topology"_a = "", "strategy"_a = "reshard",
        "verify"_a = false, "Synthesizes a plan (symbolic, no communication).");

  nb::class_<BatchPlanHandle>(m, "BatchPlan", "One plan for several arrays, from a source mesh to a target mesh.")
      .def_prop_ro("src_mesh", [](const BatchPlanHandle& p) { return p.plan->src_mesh; })
      .def_prop_ro("dst_mesh", [](const BatchPlanHandle& p) { return p.plan->dst_mesh; })
      .def_prop_ro("names",
                   [](const BatchPlanHandle& p) {
                     std::vector<std::string> r;
                     for (const XArray& a : p.plan->arrays) r.push_back(a.name);
                     return r;
                   })
      .def_prop_ro("srcs",
                   [](const BatchPlanHandle& p) {
                     std::vector<MeshType> r;
                     for (const XArray& a : p.plan->arrays) r.emplace_back(a.src, p.plan->src_mesh);
                     return r;
                   })
      .def_prop_ro("dsts",
                   [](const BatchPlanHandle& p) {
                     std::vector<MeshType> r;
                     for (const XArray& a : p.plan->arrays) r.emplace_back(a.dst, p.plan->dst_mesh);
                     return r;
                   })
      .def_prop_ro("world", [](const BatchPlanHandle& p) { return p.plan->world; },
                   "Ranks the communicator needs.")
      .def_prop_ro("buckets", [](const BatchPlanHandle& p) { return p.plan->buckets; })
      .def_prop_ro("rounds", [](const BatchPlanHandle& p) { return p.plan->rounds; })
      .def_prop_ro("stats",
                   [](const BatchPlanHandle& p) {
                     nlohmann::json j = p.json();
                     for (const char* k : {"mesh", "to_mesh", "steps", "notes", "arrays"}) j.erase(k);
                     j["bytes_recv"] = p.plan->stats.bytes_recv;
                     j["lower_bound"] = p.plan->stats.lower_bound;
                     j["workspace"] = p.plan->stats.workspace;
                     return json_to_python(j);
                   },
                   "The figures of `reshard plan --batch --json`, and per world rank bytes_recv, lower_bound and workspace.")
      .def_prop_ro("verified",
                   [](const BatchPlanHandle& p) -> std::optional<bool> {
                     if (!p.sim) return std::nullopt;
                     return p.sim->ok;
                   })
      .def("to_json", [](const BatchPlanHandle& p, int indent) { return p.json().dump(indent); }, "indent"_a = 2,
           "The JSON object `reshard plan --batch --json` prints.")
      .def("__len__", [](const BatchPlanHandle& p) { return p.plan->arrays.size(); })
      .def("__str__", [](const BatchPlanHandle& p) { return to_string(*p.plan); })
      .def("__repr__", [](const BatchPlanHandle& p) {
        return fmt::format("<reshard.BatchPlan {} arrays from {} to {}: {} moves in {} buckets>", p.plan->arrays.size(),
                           p.plan->src_mesh, p.plan->dst_mesh, p.plan->moves.size(), p.plan->buckets);
      });
  m.def("plan_batch", &make_batch_plan, "src_mesh"_a, "dst_mesh"_a, "arrays"_a, "memory_cap"_a = 0, "verify"_a = false,
        "Plans (name, source, target) arrays from src_mesh to dst_mesh (symbolic, no communication).");

#ifdef RESHARD_PYTHON_MPI
  m.def("mpi_init", &mpi_init, "Initialises MPI if nobody has; returns whether this call did.");
  m.def("mpi_finalize", [] {
    if (g_we_initialized_mpi && !mpi_finalized()) MPI_Finalize();
  }, "Finalizes MPI if reshard initialised it.");
  m.def("mpi_initialized", [] {
    int i = 0;
    MPI_Initialized(&i);
    return i != 0 && !mpi_finalized();
  });
  m.def("world_rank", [] {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
  });
  m.def("world_size", [] {
    int s = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
  });

  nb::class_<ContextHandle>(m, "_Context")
      .def(nb::init<const Mesh&, std::uintptr_t, const std::string&, const std::string&, std::optional<double>, bool>(),
           "mesh"_a, "comm_address"_a, "topology"_a, "strategy"_a, "timeout_s"_a, "check_every_call"_a)
      .def("close", &ContextHandle::close)
      .def_prop_ro("closed", &ContextHandle::closed)
      .def_prop_ro("mesh", [](ContextHandle& c) { return c.mesh(); })
      .def_prop_ro("device", [](ContextHandle& c) { return c.ctx().device(); })
      .def_prop_ro("participates", [](ContextHandle& c) { return c.ctx().participates(); })
      .def("local_block", [](ContextHandle& c, const MeshType& t) {
             check_same_mesh(c.ctx().mesh(), t, "");
             return intervals(c.ctx().local_block(t.type));
           }, "type"_a)
      .def("local_shape", [](ContextHandle& c, const MeshType& t) { return shape_tuple(c.local_shape(t)); }, "type"_a)
      .def("plan",
           [](ContextHandle& c, const MeshType& src, const MeshType& dst) {
             PlanHandle p;
             p.plan = c.plan_for(src, dst);
             p.opts = c.opts_;
             return p;
           },
           "src"_a, "dst"_a)
      .def("reshard_into",
           [](ContextHandle& c, nb::handle in, nb::handle out, const MeshType& src, const MeshType& dst) {
             auto plan = c.plan_for(src, dst);
             c.run_any(*plan, in, out);
           },
           "x"_a, "out"_a, "src"_a, "dst"_a)
      .def("run", [](ContextHandle& c, const PlanHandle& p, nb::handle in, nb::handle out) {
             check_same_mesh(c.mesh(), MeshType(p.plan->src, p.plan->mesh), "plan's");
             c.run_any(*p.plan, in, out);
           }, "plan"_a, "x"_a, "out"_a)
      .def("fill_index", [](ContextHandle& c, const MeshType& t, OutArray& out) {
             auto shape = c.local_shape(t);
             Shard s = check_shard("output", out.dtype(), out.ndim(), out.shape_ptr(), out.data(), t.type, shape);
             (void)s;
             c.ctx().fill_index(t.type, out.data());
           }, "type"_a, "out"_a.noconvert())
      .def("count_index_mismatches",
           [](ContextHandle& c, const MeshType& t, const InArray& x, std::optional<MeshType> source) {
             auto shape = c.local_shape(t);
             Shard s = check_shard("input", x.dtype(), x.ndim(), x.shape_ptr(), x.data(), t.type, shape);
             nb::gil_scoped_release release;
             return c.ctx().count_index_mismatches(t.type, s.data, s.bytes, source ? &source->type : nullptr);
           },
           "type"_a, "x"_a, "source"_a = nb::none())
      .def("explain", [](ContextHandle& c, const PlanHandle& p) {
             Executor* e = c.ctx().executor();
             return e ? e->explain(*p.plan) : std::string();
           }, "plan"_a)
      .def("workspace_bytes", [](ContextHandle& c, const PlanHandle& p) -> std::int64_t {
             Executor* e = c.ctx().executor();
             return e ? e->workspace_bytes(*p.plan) : 0;
           }, "plan"_a)
      // The baseline of the Python benchmark (python/benchmarks/overhead.py): the same call
      // from C++, as a C++ program makes it (a plan held, then Context::reshard), timed in C++.
      // barrier: each call starts after an MPI_Barrier and counts the slowest rank (as `reshard
      // run` times); else one batch of `iters` calls, per call. Collective.
      .def("_time_cpp_calls",
           [](ContextHandle& c, const InArray& in, OutArray& out, const MeshType& src, const MeshType& dst, int iters,
              bool barrier) {
             Context& ctx = c.ctx();
             auto plan = c.plan_for(src, dst);
             c.run(*plan, ArrayRef{in.dtype(), in.ndim(), in.shape_ptr(), in.data()},
                   ArrayRef{out.dtype(), out.ndim(), out.shape_ptr(), out.data()});  // checks the arrays once
             const std::size_t ib = in.nbytes(), ob = out.nbytes();
             std::vector<double> times;
             nb::gil_scoped_release release;
             MPI_Comm comm = ctx.comm();
             if (comm == MPI_COMM_NULL) return times;
             auto now = [] { return MPI_Wtime(); };
             if (!barrier) {
               MPI_Barrier(comm);
               double t0 = now();
               for (int i = 0; i < iters; ++i) ctx.reshard(*plan, in.data(), ib, out.data(), ob);
               double dt = (now() - t0) / std::max(1, iters), slowest = 0;
               MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
               times.push_back(slowest);
               return times;
             }
             for (int i = 0; i < iters; ++i) {
               MPI_Barrier(comm);
               double t0 = now();
               ctx.reshard(*plan, in.data(), ib, out.data(), ob);
               double dt = now() - t0, slowest = 0;
               MPI_Allreduce(&dt, &slowest, 1, MPI_DOUBLE, MPI_MAX, comm);
               times.push_back(slowest);
             }
             return times;
           },
           "x"_a, "out"_a.noconvert(), "src"_a, "dst"_a, "iters"_a, "barrier"_a);

  nb::class_<XHandleBox>(m, "_XHandle")
      .def("test", &XHandleBox::test)
      .def("wait", &XHandleBox::wait)
      .def_prop_ro("done", &XHandleBox::done)
      .def_prop_ro("outputs", [](const XHandleBox& b) { return b.outputs; });
  nb::class_<XContextHandle>(m, "_XContext")
      .def(nb::init<const Mesh&, const Mesh&, std::uintptr_t, std::int64_t, std::optional<double>>(), "src_mesh"_a,
           "dst_mesh"_a, "comm_address"_a, "memory_cap"_a, "timeout_s"_a)
      .def("close", &XContextHandle::close)
      .def_prop_ro("closed", &XContextHandle::closed)
      .def_prop_ro("src_mesh", [](XContextHandle& c) { return c.x().src_mesh(); })
      .def_prop_ro("dst_mesh", [](XContextHandle& c) { return c.x().dst_mesh(); })
      .def_prop_ro("rank", [](XContextHandle& c) { return c.x().rank(); })
      .def_prop_ro("src_device", [](XContextHandle& c) { return c.x().src_device(); })
      .def_prop_ro("dst_device", [](XContextHandle& c) { return c.x().dst_device(); })
      .def_prop_ro("workspace_peak_bytes", [](XContextHandle& c) { return c.x().workspace_peak_bytes(); })
      .def("plan", &XContextHandle::plan, "arrays"_a)
      .def("start", &XContextHandle::start, "plan"_a, "xs"_a, "outs"_a)
      .def("count_index_mismatches", &XContextHandle::count_index_mismatches, "plan"_a, "i"_a, "out"_a)
      .def("fill_index_src", &XContextHandle::fill_index_src, "type"_a, "out"_a.noconvert());
#endif
}
