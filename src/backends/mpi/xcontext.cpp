// XContext (xcontext.hpp): cross-mesh and batched plans over MPI point-to-point messages, with
// an asynchronous handle. The messages, their staging and their order come from the same
// phases the planner and the simulator use (src/xplan/xplan_detail.hpp).
#include "reshard/xcontext.hpp"

#include <chrono>
#include <climits>
#include <cstring>

#include "../../xplan/xplan_detail.hpp"
#include "mpi_comm.hpp"
#include "reshard/detail/box_walk.hpp"
#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"

namespace reshard {

namespace {

using Clock = std::chrono::steady_clock;
using detail::BoxWalk;

// One side of a prepared copy: an array's buffer (this rank's source shard, or its target
// shard when `out`) or, with array == -1, the phase's staging part; `off` bytes into it.
struct Side {
  int array = -1;
  bool out = false;
  std::int64_t off = 0;
};

// One box copy, prepared once per plan: a walk over bytes (bases folded into the sides'
// offsets), so that a call only runs loops of fixed-length runs.
struct Copy {
  Side src, dst;
  BoxWalk walk;
};

struct Msg {
  int peer = 0;
  std::int64_t bytes = 0;
  bool in_place = false;
  Side place;                // in place: where the box's first byte sits in the caller's buffer
  MPI_Datatype type = MPI_BYTE;  // in place: MPI_BYTE x bytes, or the strided box's datatype x 1
  int count = 0;
  std::int64_t stage = 0;    // staged: offset in the phase's send (receive) part
  std::vector<Copy> copies;  // staged: pack (unpack) copies, in message order
};

struct PhasePrep {
  std::vector<Msg> sends, recvs;
  std::vector<Copy> locals;  // source shard to target shard
  bool relays = false;
  std::int64_t send_staging = 0, recv_staging = 0;
};

// The byte walk of `extent` at `src_off` in `src_shape` to `dst_off` in `dst_shape`, its bases
// returned in bytes through the sides. Pre: the box fits (the planner's boxes are in blocks).
Copy copy_of(std::span<const std::int64_t> src_shape, std::span<const std::int64_t> src_off,
             std::span<const std::int64_t> dst_shape, std::span<const std::int64_t> dst_off,
             std::span<const std::int64_t> extent, std::size_t elem, Side src, Side dst) {
  Copy c;
  if (const char* err = detail::make_box_walk(static_cast<int>(extent.size()), src_shape.data(), src_off.data(),
                                              dst_shape.data(), dst_off.data(), extent.data(), c.walk))
    throw Error(std::string("cross-mesh plan: ") + err);
  const auto es = static_cast<std::int64_t>(elem);
  src.off += c.walk.src_base * es;
  dst.off += c.walk.dst_base * es;
  c.walk.src_base = c.walk.dst_base = 0;
  if (c.walk.volume > 0) detail::rescale_walk(c.walk, elem, 1);
  c.src = src;
  c.dst = dst;
  return c;
}

// The rows of a walk, each a memcpy of N bytes the compiler inlines (small runs: the strided
// columns of a transposed layout), or of the run's length.
template <std::size_t N>
void copy_rows(const BoxWalk& w, const std::byte* s, std::byte* d) {
  const std::size_t len = N ? N : static_cast<std::size_t>(w.run());
  if (w.rank == 2) {  // the common case: one loop of rows
    const std::int64_t ss = w.src_stride[0], ds = w.dst_stride[0];
    for (std::int64_t r = 0; r < w.extent[0]; ++r) std::memcpy(d + r * ds, s + r * ss, len);
    return;
  }
  std::int64_t idx[detail::kMaxWalkRank] = {};
  std::int64_t so = 0, dof = 0;
  for (;;) {
    std::memcpy(d + dof, s + so, len);
    int k = w.rank - 2;
    for (; k >= 0; --k) {
      so += w.src_stride[k];
      dof += w.dst_stride[k];
      if (++idx[k] < w.extent[k]) break;
      so -= w.src_stride[k] * w.extent[k];
      dof -= w.dst_stride[k] * w.extent[k];
      idx[k] = 0;
    }
    if (k < 0) return;
  }
}

void run_copy(const BoxWalk& w, const std::byte* s, std::byte* d) {
  if (w.volume == 0) return;
  if (w.rank == 1) {
    std::memcpy(d, s, static_cast<std::size_t>(w.volume));
    return;
  }
  switch (w.run()) {
    case 2: return copy_rows<2>(w, s, d);
    case 4: return copy_rows<4>(w, s, d);
    case 8: return copy_rows<8>(w, s, d);
    case 16: return copy_rows<16>(w, s, d);
    case 32: return copy_rows<32>(w, s, d);
    case 64: return copy_rows<64>(w, s, d);
    default: return copy_rows<0>(w, s, d);
  }
}

// The datatype of a strided byte walk (one side's strides): its run, then an hvector per outer
// loop; the types made are appended to `owned` (the last one is committed).
MPI_Datatype type_of(const BoxWalk& w, bool src_side, std::vector<MPI_Datatype>& owned) {
  MPI_Datatype t = MPI_DATATYPE_NULL;
  mpi::check(MPI_Type_contiguous(static_cast<int>(w.run()), MPI_BYTE, &t), "MPI_Type_contiguous");
  owned.push_back(t);
  for (int k = w.rank - 2; k >= 0; --k) {
    MPI_Datatype outer = MPI_DATATYPE_NULL;
    const std::int64_t stride = src_side ? w.src_stride[k] : w.dst_stride[k];
    mpi::check(MPI_Type_create_hvector(static_cast<int>(w.extent[k]), 1, static_cast<MPI_Aint>(stride), t, &outer),
               "MPI_Type_create_hvector");
    owned.push_back(outer);
    t = outer;
  }
  mpi::check(MPI_Type_commit(&owned.back()), "MPI_Type_commit");
  return owned.back();
}

}  // namespace

struct XContext::Prepared {
  XPlan plan;
  const XPlan* origin = nullptr;  // the cached plan (XContext::plan) this was prepared for
  std::vector<PhasePrep> phases;
  std::int64_t slot_bytes[2] = {0, 0};
  // One set per reshard in flight: staging (two slots, each its send part then its receive
  // part) and, per array with a `pre` plan, this rank's shard of mid.
  struct Set {
    std::vector<std::byte> staging;
    std::vector<std::vector<std::byte>> mid;
    bool busy = false;
  };
  std::vector<Set> sets;
  std::vector<std::size_t> mid_bytes;  // per array (0: no `pre`)
  std::vector<std::size_t> in_bytes, out_bytes;  // per array: this rank's shards (0: not on the mesh)
  std::uint64_t hash = 0;
  std::string summary, local_error;
  std::vector<MPI_Datatype> types;  // of the strided messages that move in place
  bool agreed = false;  // every rank has run it once with valid buffers (check_agreement)

  Prepared() = default;
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;
  ~Prepared() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
      for (MPI_Datatype& t : types) MPI_Type_free(&t);
  }
};

void XContext::hold(std::int64_t bytes) {
  held_ += bytes;
  peak_ = std::max(peak_, held_);
}

XContext::XContext(const Mesh& src_mesh, const Mesh& dst_mesh, MPI_Comm comm, XOptions opts, ExecOptions exec)
    : src_mesh_(src_mesh), dst_mesh_(dst_mesh), opts_(std::move(opts)), exec_(exec) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) throw Error("reshard::XContext needs MPI to be initialised (MPI_Init) first");
  timeout_s_ = mpi::resolve_timeout(exec.timeout_s);
  // Each Context checks its mesh against the communicator on every rank (MismatchError).
  src_ = std::make_unique<Context>(src_mesh_, comm, opts_.synth, exec);
  dst_ = std::make_unique<Context>(dst_mesh_, comm, opts_.synth, exec);
  mpi::check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  mpi::check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
}

XContext::~XContext() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

std::shared_ptr<const XPlan> XContext::plan(const std::vector<XArray>& arrays) {
  for (auto& [a, p] : plans_)
    if (a == arrays) return p;
  auto p = std::make_shared<const XPlan>(plan_batch(src_mesh_, dst_mesh_, arrays, opts_));
  plans_.emplace_back(arrays, p);
  return p;
}

XContext::Prepared& XContext::prepare(const XPlan& plan) {
  // A plan from plan() is const and kept alive by plans_: its address identifies it, and a
  // loop that reshards the same batch every step finds its messages without comparing moves.
  for (auto& pr : prepared_)
    if (pr->origin == &plan) return *pr;
  const XPlan* origin = nullptr;
  for (auto& [a, p] : plans_)
    if (p.get() == &plan) origin = p.get();
  for (auto& pr : prepared_)
    if (pr->plan.moves == plan.moves && pr->plan.direct_min_bytes == plan.direct_min_bytes &&
        pr->plan.arrays == plan.arrays && pr->plan.src_mesh == plan.src_mesh && pr->plan.dst_mesh == plan.dst_mesh) {
      if (origin && !pr->origin) pr->origin = origin;
      return *pr;
    }
  auto pr = std::make_unique<Prepared>();
  pr->plan = plan;
  pr->origin = origin;
  const XPlan& p = pr->plan;
  const std::string fp = xplan_fingerprint(p);
  pr->hash = fnv1a(fp);
  pr->summary = fmt::format("a plan of {} arrays from {} to {} ({} moves)", p.arrays.size(), p.src_mesh, p.dst_mesh,
                            p.moves.size());
  if (!(p.src_mesh == src_mesh_) || !(p.dst_mesh == dst_mesh_))
    pr->local_error = fmt::format("the plan is from mesh {} to {}, this XContext from {} to {}", p.src_mesh,
                                  p.dst_mesh, src_mesh_, dst_mesh_);
  int phase_no = 0;
  for (const xdetail::Phase& ph : xdetail::phases_of(p)) {
    PhasePrep pp;
    pp.relays = ph.relays;
    for (const xdetail::Message& msg : ph.messages) {
      if (msg.from != rank_ && msg.to != rank_) continue;
      const bool sending = msg.from == rank_;
      Msg m;
      m.peer = sending ? msg.to : msg.from;
      m.bytes = msg.bytes;
      m.in_place = (sending ? msg.send_staging : msg.recv_staging) == 0;
      if (msg.bytes > INT_MAX)
        pr->local_error = fmt::format("a message of {} B to rank {} is over MPI's 2 GiB count; use a --memory-cap",
                                      msg.bytes, m.peer);
      std::int64_t& part = sending ? pp.send_staging : pp.recv_staging;
      if (m.in_place) {
        const XMove& mv = p.moves[msg.moves.front()];
        const std::size_t elem = size_of(p.arrays[mv.array].src.dtype);
        const Box blk = sending ? xdetail::send_block(p, mv) : xdetail::recv_block(p, mv);
        const auto shape = extents(blk), off = offset_in(mv.box, blk), ext = extents(mv.box);
        const std::vector<std::int64_t> zero(ext.size(), 0);
        // The walk of the box in this side's buffer (its strides on the buffer's side).
        const Copy c = sending ? copy_of(shape, off, ext, zero, ext, elem, Side{mv.array, mv.relay, 0}, Side{})
                               : copy_of(ext, zero, shape, off, ext, elem, Side{}, Side{mv.array, true, 0});
        m.place = sending ? c.src : c.dst;
        if (c.walk.rank <= 1 || msg.bytes > INT_MAX) {  // too large: refused by local_error
          m.count = static_cast<int>(std::min<std::int64_t>(m.bytes, INT_MAX));
        } else {
          m.type = type_of(c.walk, sending, pr->types);
          m.count = 1;
        }
      } else {
        m.stage = part;
        std::int64_t at = part;
        for (std::size_t i : msg.moves) {
          const XMove& mv = p.moves[i];
          const std::size_t elem = size_of(p.arrays[mv.array].src.dtype);
          const Box blk = sending ? xdetail::send_block(p, mv) : xdetail::recv_block(p, mv);
          const auto shape = extents(blk), off = offset_in(mv.box, blk), ext = extents(mv.box);
          const std::vector<std::int64_t> zero(ext.size(), 0);
          m.copies.push_back(sending ? copy_of(shape, off, ext, zero, ext, elem, Side{mv.array, mv.relay, 0}, Side{-1, false, at})
                                     : copy_of(ext, zero, shape, off, ext, elem, Side{-1, false, at}, Side{mv.array, true, 0}));
          at += xdetail::move_bytes(p, mv);
        }
        part += m.bytes;
      }
      (sending ? pp.sends : pp.recvs).push_back(std::move(m));
    }
    for (std::size_t i : ph.locals) {
      const XMove& mv = p.moves[i];
      if (mv.from != rank_) continue;
      const Box sb = xdetail::send_block(p, mv), rb = xdetail::recv_block(p, mv);
      pp.locals.push_back(copy_of(extents(sb), offset_in(mv.box, sb), extents(rb), offset_in(mv.box, rb),
                                  extents(mv.box), size_of(p.arrays[mv.array].src.dtype), Side{mv.array, false, 0},
                                  Side{mv.array, true, 0}));
    }
    pr->slot_bytes[phase_no % 2] = std::max(pr->slot_bytes[phase_no % 2], pp.send_staging + pp.recv_staging);
    pr->phases.push_back(std::move(pp));
    ++phase_no;
  }
  const Mesh sm = p.src_mesh.without_ranks(), dm = p.dst_mesh.without_ranks();
  pr->mid_bytes.assign(p.arrays.size(), 0);
  pr->in_bytes.assign(p.arrays.size(), 0);
  pr->out_bytes.assign(p.arrays.size(), 0);
  const int s = p.src_mesh.device_of(rank_), t = p.dst_mesh.device_of(rank_);
  for (std::size_t a = 0; a < p.arrays.size(); ++a) {
    if (s >= 0) pr->in_bytes[a] = static_cast<std::size_t>(p.arrays[a].src.local_bytes(sm, s));
    if (t >= 0) pr->out_bytes[a] = static_cast<std::size_t>(p.arrays[a].dst.local_bytes(dm, t));
    if (s >= 0 && !p.pre[a].steps.empty()) pr->mid_bytes[a] = static_cast<std::size_t>(p.mid[a].local_bytes(sm, s));
  }
  prepared_.push_back(std::move(pr));
  return *prepared_.back();
}

// ---- one reshard in flight -------------------------------------------------------------

struct XHandle::State {
  XContext* x = nullptr;
  XContext::Prepared* pr = nullptr;
  std::vector<const std::byte*> in;  // per array: what moves read (the caller's input or mid)
  std::vector<std::byte*> out;
  int set = -1;  // staging set
  int tag = 0;
  std::size_t phase = 0;    // the phase on the wire
  bool packed_next = false; // phase+1 is already packed
  bool posted = false, finished = false;
  std::vector<MPI_Request> reqs;
  Clock::time_point since, last_poll;  // phase posted (or deadline restarted); last test()

  std::byte* slot(std::size_t k, bool recv) {
    const std::int64_t base = (k % 2) ? pr->slot_bytes[0] : 0;
    const PhasePrep& ph = pr->phases[k];
    return pr->sets[set].staging.data() + base + (recv ? ph.send_staging : 0);
  }
  // Where a side of a copy or message is. Only called for sides that hold bytes, so never on a
  // null buffer (an empty shard).
  const std::byte* src_at(const Side& s, const std::byte* stage) const {
    return (s.array < 0 ? stage : s.out ? out[s.array] : in[s.array]) + s.off;
  }
  std::byte* dst_at(const Side& s, std::byte* stage) const { return (s.array < 0 ? stage : out[s.array]) + s.off; }
  void run(const Copy& c, std::byte* stage) const { run_copy(c.walk, src_at(c.src, stage), dst_at(c.dst, stage)); }

  void pack(std::size_t k) {
    std::byte* st = slot(k, false);
    for (const Msg& m : pr->phases[k].sends)
      for (const Copy& c : m.copies) run(c, st);
  }
  void post(std::size_t k) {
    const PhasePrep& ph = pr->phases[k];
    reqs.assign(ph.recvs.size() + ph.sends.size(), MPI_REQUEST_NULL);
    std::byte* rs = slot(k, true);
    std::size_t q = 0;
    for (const Msg& m : ph.recvs) {
      if (m.in_place)
        mpi::check(MPI_Irecv(dst_at(m.place, rs), m.count, m.type, m.peer, tag, x->comm_, &reqs[q++]), "MPI_Irecv");
      else
        mpi::check(MPI_Irecv(rs + m.stage, static_cast<int>(m.bytes), MPI_BYTE, m.peer, tag, x->comm_, &reqs[q++]),
                   "MPI_Irecv");
    }
    std::byte* ss = slot(k, false);
    for (const Msg& m : ph.sends) {
      if (m.in_place)
        mpi::check(MPI_Isend(src_at(m.place, ss), m.count, m.type, m.peer, tag, x->comm_, &reqs[q++]), "MPI_Isend");
      else
        mpi::check(MPI_Isend(ss + m.stage, static_cast<int>(m.bytes), MPI_BYTE, m.peer, tag, x->comm_, &reqs[q++]),
                   "MPI_Isend");
    }
    // Local copies read the source shard (never a relay), write boxes no message writes.
    for (const Copy& c : ph.locals) run(c, nullptr);
    posted = true;
    since = last_poll = Clock::now();
  }
  void unpack(std::size_t k) {
    std::byte* rs = slot(k, true);
    for (const Msg& m : pr->phases[k].recvs)
      for (const Copy& c : m.copies) run(c, rs);
  }
  // Packs the next phase while this one is on the wire, unless it forwards what this one brings.
  void prefetch() {
    if (!packed_next && phase + 1 < pr->phases.size() && !pr->phases[phase + 1].relays) {
      pack(phase + 1);
      packed_next = true;
    }
  }
  void advance() {  // the phase on the wire completed
    unpack(phase);
    ++phase;
    posted = false;
    if (phase >= pr->phases.size()) {
      finish();
      return;
    }
    if (!packed_next) pack(phase);
    packed_next = false;
    post(phase);
    prefetch();
  }
  void finish() {
    finished = true;
    if (set >= 0) pr->sets[set].busy = false;
    set = -1;
  }
  bool test() {
    // A rank that computed for long between two test() calls did not progress its own side:
    // its peers cannot be judged on that time, so the deadline restarts from this call.
    const Clock::time_point now = Clock::now();
    if (x->timeout_s_ > 0 && std::chrono::duration<double>(now - last_poll).count() > x->timeout_s_ / 2) since = now;
    last_poll = now;
    while (!finished) {
      int flag = 0;
      mpi::check(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, MPI_STATUSES_IGNORE), "MPI_Testall");
      if (!flag) {
        if (x->timeout_s_ > 0 && std::chrono::duration<double>(Clock::now() - since).count() >= x->timeout_s_)
          timed_out();
        return false;
      }
      advance();
    }
    return true;
  }
  [[noreturn]] void timed_out() {
    // Completed requests are MPI_REQUEST_NULL: the others name the peers still missing, both
    // ways (a peer that stopped progressing may have sent its part and never taken ours).
    std::string from, to;
    const PhasePrep& ph = pr->phases[phase];
    for (std::size_t i = 0; i < ph.recvs.size(); ++i)
      if (reqs[i] != MPI_REQUEST_NULL) from += fmt::format("{}{}", from.empty() ? "" : ",", ph.recvs[i].peer);
    for (std::size_t i = 0; i < ph.sends.size(); ++i)
      if (reqs[ph.recvs.size() + i] != MPI_REQUEST_NULL)
        to += fmt::format("{}{}", to.empty() ? "" : ",", ph.sends[i].peer);
    fmt::print(stderr,
               "reshard: rank {}: cross-mesh phase {} of {} waited {:.0f} s (RESHARD_TIMEOUT_S) for messages from "
               "ranks [{}] and to ranks [{}]; ending the job\n",
               x->rank_, phase, pr->phases.size(), x->timeout_s_, from, to);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 3);
    std::abort();
  }
};

XHandle::XHandle(std::unique_ptr<State> s) : s_(std::move(s)) {}
XHandle::XHandle(XHandle&&) noexcept = default;
XHandle& XHandle::operator=(XHandle&& o) noexcept {
  if (this != &o) {
    if (s_ && !s_->finished) wait();
    s_ = std::move(o.s_);
  }
  return *this;
}
XHandle::~XHandle() {
  if (s_ && !s_->finished) {
    try {
      wait();
    } catch (const std::exception& e) {
      fmt::print(stderr, "reshard: an unfinished asynchronous reshard failed: {}\n", e.what());
      MPI_Abort(MPI_COMM_WORLD, 3);
    }
  }
}
bool XHandle::test() { return !s_ || s_->test(); }
void XHandle::wait() {
  while (!test()) {
  }
}
bool XHandle::done() const { return !s_ || s_->finished; }

XHandle XContext::reshard_async(const XPlan& plan, std::span<const ConstBuffer> in, std::span<const MutBuffer> out,
                                std::string_view caller_error) {
  Prepared& pr = prepare(plan);
  const XPlan& p = pr.plan;
  const Mesh sm = p.src_mesh.without_ranks(), dm = p.dst_mesh.without_ranks();
  const int t = p.dst_mesh.device_of(rank_);
  std::string err = pr.local_error.empty() ? std::string(caller_error) : pr.local_error;
  if (err.empty() && (in.size() != p.arrays.size() || out.size() != p.arrays.size()))
    err = fmt::format("the plan has {} arrays but {} inputs and {} outputs were passed", p.arrays.size(), in.size(),
                      out.size());
  for (std::size_t a = 0; err.empty() && a < p.arrays.size(); ++a) {
    const std::size_t want_in = pr.in_bytes[a], want_out = pr.out_bytes[a];
    auto name = [&] { return p.arrays[a].name.empty() ? fmt::format("{}", a) : "'" + p.arrays[a].name + "'"; };
    if (in[a].bytes != want_in)
      err = fmt::format("array {}: rank {} passes an input of {} B, its shard of {} has {} B", name(), rank_,
                        in[a].bytes, p.arrays[a].src, want_in);
    else if (out[a].bytes != want_out)
      err = fmt::format("array {}: rank {} passes an output of {} B, its shard of {} has {} B", name(), rank_,
                        out[a].bytes, p.arrays[a].dst, want_out);
    else if ((want_in && !in[a].data) || (want_out && !out[a].data))
      err = fmt::format("array {}: a null buffer on rank {}", name(), rank_);
    else if (want_in && want_out) {
      auto lo = static_cast<const std::byte*>(in[a].data), olo = static_cast<const std::byte*>(out[a].data);
      if (lo < olo + want_out && olo < lo + want_in) err = fmt::format("array {}: input and output overlap", name());
    }
  }
  // Every rank of the communicator, before anything moves: same plan, valid buffers. With
  // ExecOptions::check_every_call false only a plan's first call pays this all-reduce (on 8
  // ranks over 2 cores, a third of a small batch's time); later bad buffers throw locally.
  if (exec_.check_every_call || !pr.agreed) {
    mpi::MpiGroup world(comm_, false, "world", timeout_s_);
    check_agreement(world, "the cross-mesh plan", pr.hash, pr.summary, err);
    pr.agreed = true;
  } else if (!err.empty()) {
    throw MismatchError(err);
  }
  auto st = std::make_unique<XHandle::State>();
  st->x = this;
  st->pr = &pr;
  // A free set of buffers (a new one when every set is in flight).
  std::size_t set = 0;
  while (set < pr.sets.size() && pr.sets[set].busy) ++set;
  if (set == pr.sets.size()) {
    Prepared::Set& n = pr.sets.emplace_back();
    n.staging.resize(static_cast<std::size_t>(pr.slot_bytes[0] + pr.slot_bytes[1]));
    hold(static_cast<std::int64_t>(n.staging.size()));
    n.mid.resize(p.arrays.size());
    for (std::size_t a = 0; a < p.arrays.size(); ++a) {
      n.mid[a].resize(pr.mid_bytes[a]);
      pre_bytes_ += static_cast<std::int64_t>(pr.mid_bytes[a]);
    }
  }
  pr.sets[set].busy = true;
  st->set = static_cast<int>(set);
  std::vector<std::vector<std::byte>>& mid = pr.sets[set].mid;
  st->tag = 1 + (seq_++ % 30000);
  st->in.resize(p.arrays.size());
  st->out.resize(p.arrays.size());
  for (std::size_t a = 0; a < p.arrays.size(); ++a) {
    st->in[a] = static_cast<const std::byte*>(in[a].data);
    st->out[a] = static_cast<std::byte*>(out[a].data);
  }
  // Pending reductions first, on the source mesh (blocking; every rank calls, others return).
  for (std::size_t a = 0; a < p.arrays.size(); ++a) {
    if (p.pre[a].steps.empty()) continue;
    src_->reshard(p.pre[a], in[a].data, in[a].bytes, mid[a].data(), mid[a].size());
    st->in[a] = mid[a].data();
  }
  // Targets with a pending reduction: non-lead members hold the identity (make_partial).
  if (t >= 0)
    for (std::size_t a = 0; a < p.arrays.size(); ++a) {
      const Type& dst = p.arrays[a].dst;
      bool lead = true;
      for (const auto& ax : dst.reduce_axes) lead = lead && dm.coord(t, dm.axis_index(ax)) == 0;
      if (!lead) fill_identity(out[a].data, dst.local_elements(dm, t), dst.dtype, dst.op);
    }
  if (!pr.phases.empty()) {
    st->pack(0);
    st->post(0);
    st->prefetch();
  } else {
    st->finish();
  }
  return XHandle(std::move(st));
}

void XContext::reshard(const XPlan& plan, std::span<const ConstBuffer> in, std::span<const MutBuffer> out,
                       std::string_view caller_error) {
  reshard_async(plan, in, out, caller_error).wait();
}

std::int64_t XContext::count_index_mismatches(const XArray& a, const void* local, std::size_t bytes) {
  std::int64_t bad = 0;
  const int t = dst_device();
  if (t >= 0) {
    const Mesh dm = dst_mesh_.without_ranks();
    const Type& dst = a.dst;
    if (static_cast<std::int64_t>(bytes) != dst.local_bytes(dm, t))
      throw MismatchError(fmt::format("checking {} B against rank {}'s shard of {}, which has {} B", bytes, rank_, dst,
                                      dst.local_bytes(dm, t)));
    // The logical values come from the source's index fill: a source on the target mesh with
    // the same shape and, where it matters (integer max/min, whose partials wrap), a reduce
    // clause over an extra minor axis as large as the source's reduce group.
    Type source = a.src;
    for (auto& d : source.dims) d.axes.clear();
    source.op = ReduceOp::none;
    source.reduce_axes.clear();
    Mesh check_mesh = dm;
    int check_device = t;
    if (index_fill_needs_source(a.src)) {
      const Mesh sm = src_mesh_.without_ranks();
      int g = 1;
      for (const auto& ax : a.src.reduce_axes) g *= sm.axis_size(ax);
      std::vector<Axis> axes = dm.axes();
      axes.push_back({"reduced_source_group", g});
      check_mesh = Mesh(axes);
      check_device = t * g;  // coordinate 0 on the extra axis: the same blocks as device t
      source.op = a.src.op;
      source.reduce_axes = {"reduced_source_group"};
    }
    bool lead = true;
    for (const auto& ax : dst.reduce_axes) lead = lead && dm.coord(t, dm.axis_index(ax)) == 0;
    if (lead) {
      bad = check_index(local, dst, check_mesh, check_device, index_fill_tolerance(a.src, src_mesh_.without_ranks()),
                        &source);
    } else {  // a non-lead member of a pending reduction holds the identity
      std::vector<std::byte> id(bytes);
      fill_identity(id.data(), dst.local_elements(dm, t), dst.dtype, dst.op);
      bad = std::memcmp(id.data(), local, bytes) ? dst.local_elements(dm, t) : 0;
    }
  }
  std::int64_t total = 0;
  mpi::check(MPI_Allreduce(&bad, &total, 1, MPI_INT64_T, MPI_SUM, comm_), "MPI_Allreduce");
  return total;
}

}  // namespace reshard
