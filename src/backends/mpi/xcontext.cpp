// XContext (xcontext.hpp): cross-mesh and batched plans over MPI point-to-point messages, with
// an asynchronous handle. The messages, their staging and their order come from the same
// phases the planner and the simulator use (src/xplan/xplan_detail.hpp).
#include "reshard/xcontext.hpp"

#include <chrono>
#include <cstring>

#include "../../xplan/xplan_detail.hpp"
#include "mpi_comm.hpp"
#include "reshard/error.hpp"
#include "reshard/host_kernels.hpp"

namespace reshard {

namespace {

using Clock = std::chrono::steady_clock;

// Where one box of one array sits in this rank's buffer: shape of the block, corner, extent.
struct BoxAt {
  int array = 0;
  bool from_out = false;  // reads the target shard (a relay) / writes the target shard
  std::vector<std::int64_t> shape, offset, extent;
  std::int64_t bytes = 0, linear = 0;  // linear: byte offset of the corner (for in-place runs)
};

struct Msg {
  int peer = 0;
  std::int64_t bytes = 0;
  bool in_place = false;
  std::vector<BoxAt> boxes;
};

struct PhasePrep {
  std::vector<Msg> sends, recvs;
  std::vector<std::pair<BoxAt, BoxAt>> locals;  // source box, target box
  bool relays = false;
  std::int64_t send_staging = 0, recv_staging = 0;
};

BoxAt box_at(const XPlan& p, const XMove& m, const Box& block, bool from_out) {
  BoxAt b;
  b.array = m.array;
  b.from_out = from_out;
  b.shape = extents(block);
  b.offset = offset_in(m.box, block);
  b.extent = extents(m.box);
  const std::int64_t elem = static_cast<std::int64_t>(size_of(p.arrays[m.array].src.dtype));
  b.bytes = m.box.volume() * elem;
  std::int64_t lin = 0;
  for (std::size_t d = 0; d < b.shape.size(); ++d) lin = lin * b.shape[d] + b.offset[d];
  b.linear = lin * elem;
  return b;
}

std::size_t elem_of(const XPlan& p, int array) { return size_of(p.arrays[array].src.dtype); }

// A pointer into a buffer where the caller passed none (an empty shard): never dereferenced.
std::byte* at(void* base, std::int64_t off) { return static_cast<std::byte*>(base) + off; }

}  // namespace

struct XContext::Prepared {
  XPlan plan;
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
  std::uint64_t hash = 0;
  std::string summary, local_error;
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
  for (auto& pr : prepared_)
    if (pr->plan.moves == plan.moves && pr->plan.arrays == plan.arrays && pr->plan.src_mesh == plan.src_mesh &&
        pr->plan.dst_mesh == plan.dst_mesh)
      return *pr;
  auto pr = std::make_unique<Prepared>();
  pr->plan = plan;
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
      for (std::size_t i = msg.first; i < msg.last; ++i) {
        const XMove& mv = p.moves[i];
        m.boxes.push_back(sending ? box_at(p, mv, xdetail::send_block(p, mv), mv.relay)
                                  : box_at(p, mv, xdetail::recv_block(p, mv), true));
      }
      (sending ? pp.send_staging : pp.recv_staging) += m.in_place ? 0 : m.bytes;
      (sending ? pp.sends : pp.recvs).push_back(std::move(m));
    }
    for (std::size_t i : ph.locals) {
      const XMove& mv = p.moves[i];
      if (mv.from != rank_) continue;
      pp.locals.emplace_back(box_at(p, mv, xdetail::send_block(p, mv), false),
                             box_at(p, mv, xdetail::recv_block(p, mv), true));
    }
    pr->slot_bytes[phase_no % 2] = std::max(pr->slot_bytes[phase_no % 2], pp.send_staging + pp.recv_staging);
    pr->phases.push_back(std::move(pp));
    ++phase_no;
  }
  const Mesh sm = p.src_mesh.without_ranks();
  pr->mid_bytes.assign(p.arrays.size(), 0);
  if (const int s = p.src_mesh.device_of(rank_); s >= 0)
    for (std::size_t a = 0; a < p.arrays.size(); ++a)
      if (!p.pre[a].steps.empty()) pr->mid_bytes[a] = static_cast<std::size_t>(p.mid[a].local_bytes(sm, s));
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
  const std::byte* src_of(const BoxAt& b) const { return b.from_out ? out[b.array] : in[b.array]; }

  void pack(std::size_t k) {
    const PhasePrep& ph = pr->phases[k];
    std::byte* st = slot(k, false);
    for (const Msg& m : ph.sends) {
      if (m.in_place) continue;
      for (const BoxAt& b : m.boxes) {
        std::vector<std::int64_t> zero(b.extent.size(), 0);
        copy_box(src_of(b), b.shape, b.offset, st, b.extent, zero, b.extent, elem_of(pr->plan, b.array));
        st += b.bytes;
      }
    }
  }
  void post(std::size_t k) {
    const PhasePrep& ph = pr->phases[k];
    reqs.assign(ph.recvs.size() + ph.sends.size(), MPI_REQUEST_NULL);
    std::byte* rs = slot(k, true);
    std::size_t q = 0;
    for (const Msg& m : ph.recvs) {
      void* dst = m.in_place ? at(out[m.boxes[0].array], m.boxes[0].linear) : rs;
      if (!m.in_place) rs += m.bytes;
      mpi::check(MPI_Irecv(dst, static_cast<int>(m.bytes), MPI_BYTE, m.peer, tag, x->comm_, &reqs[q++]), "MPI_Irecv");
    }
    std::byte* ss = slot(k, false);
    for (const Msg& m : ph.sends) {
      const void* src = m.in_place ? src_of(m.boxes[0]) + m.boxes[0].linear : ss;
      if (!m.in_place) ss += m.bytes;
      mpi::check(MPI_Isend(src, static_cast<int>(m.bytes), MPI_BYTE, m.peer, tag, x->comm_, &reqs[q++]), "MPI_Isend");
    }
    // Local copies read the source shard (never a relay), write boxes no message writes.
    for (const auto& [s, d] : ph.locals)
      copy_box(in[s.array], s.shape, s.offset, out[d.array], d.shape, d.offset, s.extent, elem_of(pr->plan, s.array));
    posted = true;
    since = last_poll = Clock::now();
  }
  void unpack(std::size_t k) {
    const PhasePrep& ph = pr->phases[k];
    const std::byte* rs = slot(k, true);
    for (const Msg& m : ph.recvs) {
      if (m.in_place) continue;
      for (const BoxAt& b : m.boxes) {
        std::vector<std::int64_t> zero(b.extent.size(), 0);
        copy_box(rs, b.extent, zero, out[b.array], b.shape, b.offset, b.extent, elem_of(pr->plan, b.array));
        rs += b.bytes;
      }
    }
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
  const int s = p.src_mesh.device_of(rank_), t = p.dst_mesh.device_of(rank_);
  std::string err = pr.local_error.empty() ? std::string(caller_error) : pr.local_error;
  if (err.empty() && (in.size() != p.arrays.size() || out.size() != p.arrays.size()))
    err = fmt::format("the plan has {} arrays but {} inputs and {} outputs were passed", p.arrays.size(), in.size(),
                      out.size());
  for (std::size_t a = 0; err.empty() && a < p.arrays.size(); ++a) {
    const std::size_t want_in = s >= 0 ? static_cast<std::size_t>(p.arrays[a].src.local_bytes(sm, s)) : 0;
    const std::size_t want_out = t >= 0 ? static_cast<std::size_t>(p.arrays[a].dst.local_bytes(dm, t)) : 0;
    const std::string name = p.arrays[a].name.empty() ? fmt::format("{}", a) : "'" + p.arrays[a].name + "'";
    if (in[a].bytes != want_in)
      err = fmt::format("array {}: rank {} passes an input of {} B, its shard of {} has {} B", name, rank_, in[a].bytes,
                        p.arrays[a].src, want_in);
    else if (out[a].bytes != want_out)
      err = fmt::format("array {}: rank {} passes an output of {} B, its shard of {} has {} B", name, rank_,
                        out[a].bytes, p.arrays[a].dst, want_out);
    else if ((want_in && !in[a].data) || (want_out && !out[a].data))
      err = fmt::format("array {}: a null buffer on rank {}", name, rank_);
    else if (want_in && want_out) {
      auto lo = static_cast<const std::byte*>(in[a].data), olo = static_cast<const std::byte*>(out[a].data);
      if (lo < olo + want_out && olo < lo + want_in) err = fmt::format("array {}: input and output overlap", name);
    }
  }
  // Every rank of the communicator, before anything moves: same plan, valid buffers.
  {
    mpi::MpiGroup world(comm_, false, "world", timeout_s_);
    check_agreement(world, "the cross-mesh plan", pr.hash, pr.summary, err);
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
