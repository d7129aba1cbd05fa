// train_tp_mlp: a tensor- and sequence-parallel training loop whose communication is all
// reshards. A stack of transformer-style MLP blocks, y = x + GeLU(x W1) W2, learns a fixed
// random teacher of the same shape (MSE loss, Adam or SGD) on a dp x tp mesh.
//
//   mpirun -np 4 build/bin/train_tp_mlp                      # dp=2, tp=2
//   mpirun -np 8 build/bin/train_tp_mlp --steps 50 --hidden 256 --ffn 1024
//
// Layouts (Megatron-LM with sequence parallelism; B batch, S sequence, H hidden, F ffn):
//
//   activations between blocks  f32[B{dp}, S{tp}, H]          sequence-parallel
//   input of W1 (all-gather)    f32[B{dp}, S, H]
//   W1 (column-parallel)        f32[H, F{tp}]          hidden  f32[B{dp}, S, F{tp}]   (local)
//   W2 (row-parallel)           f32[F{tp}, H]          output  f32[B{dp}, S, H] sum{tp}
//   output (reduce-scatter)     f32[B{dp}, S{tp}, H]
//   weight gradients            f32[H, F{tp}] sum{dp} -> f32[H, F{tp}]            (all-reduce)
//   loss                        f64[] sum{dp,tp}      -> f64[]                   (all-reduce)
//
// The backward pass runs the same reshards in reverse: the gradient of a reduce-scatter is an
// all-gather and the gradient of an all-gather a reduce-scatter. Each is one Context::reshard
// on reused buffers, with its plan made once before the first step.
//
// The program checks itself: rank 0 also trains the same model (same initial weights, same
// data) on one process, and every step the distributed loss must equal that loss within
// --tol (relative); at the end the loss must have fallen below --drop times the first step's.
// It exits non-zero otherwise. It prints the time per step and the share spent inside reshard
// calls (max over ranks of each step).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <mpi.h>

#include "reshard/context.hpp"

namespace {

using idx = std::int64_t;

struct Options {
  int steps = 20, batch = 8, seq = 64, hidden = 128, ffn = 512, layers = 2;
  int dp = 0, tp = 0;  // 0: derived from the world size
  std::string optimizer = "adam";
  double lr = 0;       // 0: 0.4 / hidden for Adam (the step that is safe shrinks with width), 1 for SGD
  double tol = 1e-4;   // relative difference allowed between distributed and reference loss
  double drop = 0.5;   // the last loss must be below drop x the first
  bool reference = true;
  bool check_every_call = false;
  bool split_wait = false;  // barrier before each reshard, timed apart: waiting vs moving data
  int print_every = 1;
  std::uint64_t seed = 2024;
  std::string backend = "mpi";
};

// ---------------------------------------------------------------------------------------------
// Deterministic data: a counter-based generator, so that any rank can make any element of any
// array (its own shard, or the whole array for the reference) without communication.

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
std::uint64_t stream_of(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  return mix(mix(mix(seed ^ mix(a)) ^ b) ^ c);
}
// Element i of a stream: uniform on [-sqrt 3, sqrt 3), i.e. mean 0 and variance 1.
float unit(std::uint64_t stream, idx i) {
  const double u = static_cast<double>(mix(stream ^ mix(static_cast<std::uint64_t>(i))) >> 11) * 0x1p-53;
  return static_cast<float>((2.0 * u - 1.0) * 1.7320508075688772);
}

// ---------------------------------------------------------------------------------------------
// Local kernels on dense row-major arrays. Four rows at a time so that each row of the right
// operand is read once per four rows; the inner loops are contiguous and vectorise.

// c[m x n] = a[m x k] b[k x n]
void matmul(const float* a, const float* b, float* c, idx m, idx k, idx n) {
  std::fill(c, c + m * n, 0.0f);
  idx i = 0;
  for (; i + 4 <= m; i += 4) {
    float* __restrict c0 = c + i * n;
    float* __restrict c1 = c0 + n;
    float* __restrict c2 = c1 + n;
    float* __restrict c3 = c2 + n;
    const float* a0 = a + i * k;
    for (idx p = 0; p < k; ++p) {
      const float* __restrict bp = b + p * n;
      const float x0 = a0[p], x1 = a0[k + p], x2 = a0[2 * k + p], x3 = a0[3 * k + p];
      for (idx j = 0; j < n; ++j) {
        const float v = bp[j];
        c0[j] += x0 * v;
        c1[j] += x1 * v;
        c2[j] += x2 * v;
        c3[j] += x3 * v;
      }
    }
  }
  for (; i < m; ++i) {
    float* __restrict ci = c + i * n;
    for (idx p = 0; p < k; ++p) {
      const float* __restrict bp = b + p * n;
      const float x = a[i * k + p];
      for (idx j = 0; j < n; ++j) ci[j] += x * bp[j];
    }
  }
}

// c[k x n] = a[m x k]^T b[m x n] (a weight gradient: a sum over the m tokens)
void matmul_tn(const float* a, const float* b, float* c, idx m, idx k, idx n) {
  std::fill(c, c + k * n, 0.0f);
  idx i = 0;
  for (; i + 4 <= m; i += 4) {
    const float* __restrict b0 = b + i * n;
    const float* __restrict b1 = b0 + n;
    const float* __restrict b2 = b1 + n;
    const float* __restrict b3 = b2 + n;
    const float* a0 = a + i * k;
    for (idx p = 0; p < k; ++p) {
      float* __restrict cp = c + p * n;
      const float x0 = a0[p], x1 = a0[k + p], x2 = a0[2 * k + p], x3 = a0[3 * k + p];
      for (idx j = 0; j < n; ++j) cp[j] += x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j];
    }
  }
  for (; i < m; ++i) {
    const float* __restrict bi = b + i * n;
    for (idx p = 0; p < k; ++p) {
      float* __restrict cp = c + p * n;
      const float x = a[i * k + p];
      for (idx j = 0; j < n; ++j) cp[j] += x * bi[j];
    }
  }
}

// t[c x r] = a[r x c]^T
void transpose(const float* a, float* t, idx r, idx c) {
  constexpr idx kTile = 32;
  for (idx i0 = 0; i0 < r; i0 += kTile)
    for (idx j0 = 0; j0 < c; j0 += kTile)
      for (idx i = i0; i < std::min(r, i0 + kTile); ++i)
        for (idx j = j0; j < std::min(c, j0 + kTile); ++j) t[j * r + i] = a[i * c + j];
}

// GeLU, tanh form, and its derivative.
constexpr float kGeluC = 0.7978845608028654f, kGeluA = 0.044715f;
float gelu(float x) { return 0.5f * x * (1.0f + std::tanh(kGeluC * (x + kGeluA * x * x * x))); }
float gelu_grad(float x) {
  const float t = std::tanh(kGeluC * (x + kGeluA * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * kGeluC * (1.0f + 3.0f * kGeluA * x * x);
}

// ---------------------------------------------------------------------------------------------
// What one device holds. The reference run is the same model on a one-device "mesh": every
// range is the whole dim.

struct Shard {
  idx B = 0, S = 0, H = 0, F = 0;
  idx b_lo = 0, b_n = 0;  // batch rows (split over dp)
  idx s_lo = 0, s_n = 0;  // sequence positions in the sequence-parallel layout (split over tp)
  idx f_lo = 0, f_n = 0;  // ffn columns of W1 / rows of W2 (split over tp)
  idx tokens_sp() const { return b_n * s_n; }  // rows of a sequence-parallel activation
  idx tokens() const { return b_n * S; }       // rows after the all-gather (whole sequence)
};

// The communication the model needs, and nothing else: the seam between model and backend.
// ReshardCollectives runs each as one reshard on a Context; LocalCollectives (the one-process
// reference) copies. A GPU version would hold device buffers and run the same types.
class Collectives {
 public:
  virtual ~Collectives() = default;
  // [B{dp}, S{tp}, H] -> [B{dp}, S, H]: all-gather over tp.
  virtual void gather_seq(const std::vector<float>& sp, std::vector<float>& full) = 0;
  // [B{dp}, S, H] sum{tp} -> [B{dp}, S{tp}, H]: reduce-scatter over tp.
  virtual void scatter_seq(const std::vector<float>& partial, std::vector<float>& sp) = 0;
  // A weight gradient, pending sum over dp -> replicated over dp (all-reduce). which: 1 = W1, 2 = W2.
  virtual void reduce_grad(int which, const std::vector<float>& partial, std::vector<float>& grad) = 0;
  // The sum over every device of one number (the loss).
  virtual double sum(double partial) = 0;
};

class LocalCollectives final : public Collectives {
 public:
  void gather_seq(const std::vector<float>& sp, std::vector<float>& full) override { full = sp; }
  void scatter_seq(const std::vector<float>& partial, std::vector<float>& sp) override { sp = partial; }
  void reduce_grad(int, const std::vector<float>& partial, std::vector<float>& grad) override { grad = partial; }
  double sum(double partial) override { return partial; }
};

class ReshardCollectives final : public Collectives {
 public:
  ReshardCollectives(reshard::Context& ctx, const Shard& d, bool split_wait) : ctx_(ctx), split_wait_(split_wait) {
    const reshard::Mesh& m = ctx.mesh();
    auto type = [&](const std::string& text) { return reshard::Type::parse(text, m); };
    const auto sp = type(fmt::format("f32[{}{{dp}}, {}{{tp}}, {}]", d.B, d.S, d.H));
    const auto full = type(fmt::format("f32[{}{{dp}}, {}, {}]", d.B, d.S, d.H));
    const auto partial = type(fmt::format("f32[{}{{dp}}, {}, {}] sum{{tp}}", d.B, d.S, d.H));
    const auto w1 = type(fmt::format("f32[{}, {}{{tp}}]", d.H, d.F));
    const auto w2 = type(fmt::format("f32[{}{{tp}}, {}]", d.F, d.H));
    const auto w1_grad = type(fmt::format("f32[{}, {}{{tp}}] sum{{dp}}", d.H, d.F));
    const auto w2_grad = type(fmt::format("f32[{}{{tp}}, {}] sum{{dp}}", d.F, d.H));
    gather_ = ctx.plan(sp, full);
    scatter_ = ctx.plan(partial, sp);
    grad1_ = ctx.plan(w1_grad, w1);
    grad2_ = ctx.plan(w2_grad, w2);
    loss_ = ctx.plan(type("f64[] sum{dp,tp}"), type("f64[]"));
  }

  void gather_seq(const std::vector<float>& sp, std::vector<float>& full) override { run(*gather_, sp, full); }
  void scatter_seq(const std::vector<float>& partial, std::vector<float>& sp) override { run(*scatter_, partial, sp); }
  void reduce_grad(int which, const std::vector<float>& partial, std::vector<float>& grad) override {
    run(which == 1 ? *grad1_ : *grad2_, partial, grad);
  }
  double sum(double partial) override {
    std::vector<double> in{partial}, out;
    run(*loss_, in, out);
    return out[0];
  }

  // Seconds spent inside Context::reshard, and (with split_wait) in the barrier before each
  // call, since the last take().
  double take_seconds() { return std::exchange(seconds_, 0.0); }
  double take_wait_seconds() { return std::exchange(wait_seconds_, 0.0); }
  int calls() const { return calls_; }
  std::string describe() const {
    std::string r;
    auto one = [&](const char* what, const reshard::Plan& p) {
      std::vector<std::string> ops;
      for (const auto& s : p.steps) ops.push_back(fmt::format("{}{{{}}}", s.op, fmt::join(s.axes, ",")));
      r += fmt::format("  {:<13} {} -> {}: {}\n", what, p.src, p.dst, ops.empty() ? "nothing" : fmt::format("{}", fmt::join(ops, ", ")));
    };
    one("sequence AG", *gather_);
    one("sequence RS", *scatter_);
    one("W1 grad AR", *grad1_);
    one("W2 grad AR", *grad2_);
    one("loss", *loss_);
    return r;
  }

 private:
  template <class T>
  void run(const reshard::Plan& plan, const std::vector<T>& in, std::vector<T>& out) {
    out.resize(static_cast<std::size_t>(ctx_.local_elements(plan.dst)));
    if (split_wait_) {  // instrumentation only: the time until the slowest rank arrives
      const auto w0 = std::chrono::steady_clock::now();
      MPI_Barrier(ctx_.comm());
      wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    }
    const auto t0 = std::chrono::steady_clock::now();
    ctx_.reshard(plan, in.data(), in.size() * sizeof(T), out.data(), out.size() * sizeof(T));
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++calls_;
  }

  reshard::Context& ctx_;
  std::shared_ptr<const reshard::Plan> gather_, scatter_, grad1_, grad2_, loss_;
  bool split_wait_;
  double seconds_ = 0, wait_seconds_ = 0;
  int calls_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Weights: W1 of block l is the global [H, F] array whose element (h, f) is unit(stream, h F + f)
// times a scale; a device keeps columns [f_lo, f_lo + f_n). W2 likewise, [F, H], rows.

std::vector<float> make_w1(std::uint64_t stream, const Shard& d, float scale) {
  std::vector<float> w(static_cast<std::size_t>(d.H * d.f_n));
  for (idx h = 0; h < d.H; ++h)
    for (idx f = 0; f < d.f_n; ++f) w[h * d.f_n + f] = scale * unit(stream, h * d.F + d.f_lo + f);
  return w;
}
std::vector<float> make_w2(std::uint64_t stream, const Shard& d, float scale) {
  std::vector<float> w(static_cast<std::size_t>(d.f_n * d.H));
  for (idx f = 0; f < d.f_n; ++f)
    for (idx h = 0; h < d.H; ++h) w[f * d.H + h] = scale * unit(stream, (d.f_lo + f) * d.H + h);
  return w;
}

// The teacher: fixed random blocks of the same shape, whole on every rank. It maps each token
// on its own, so any rank computes the targets of its own tokens.
struct Teacher {
  std::vector<std::vector<float>> w1, w2;
  idx H = 0, F = 0;

  Teacher(const Options& o, const Shard& whole) : H(whole.H), F(whole.F) {
    for (int l = 0; l < o.layers; ++l) {
      w1.push_back(make_w1(stream_of(o.seed, 1, l, 1), whole, 1.0f / std::sqrt(float(H))));
      w2.push_back(make_w2(stream_of(o.seed, 1, l, 2), whole, 1.0f / std::sqrt(float(F))));
    }
  }
  // y[n x H] from x[n x H].
  std::vector<float> operator()(const std::vector<float>& x, idx n) const {
    std::vector<float> y = x, h(static_cast<std::size_t>(n * F)), o(static_cast<std::size_t>(n * H));
    for (std::size_t l = 0; l < w1.size(); ++l) {
      matmul(y.data(), w1[l].data(), h.data(), n, H, F);
      for (float& v : h) v = gelu(v);
      matmul(h.data(), w2[l].data(), o.data(), n, F, H);
      for (idx i = 0; i < n * H; ++i) y[i] += o[i];
    }
    return y;
  }
};

// The batch of a step, in the sequence-parallel layout of `d`: x[b, s, :] has unit variance,
// and the target is the teacher's output.
void make_batch(const Options& o, int step, const Shard& d, const Teacher& teacher, std::vector<float>& x,
                std::vector<float>& target) {
  const std::uint64_t stream = stream_of(o.seed, 2, static_cast<std::uint64_t>(step), 0);
  x.resize(static_cast<std::size_t>(d.tokens_sp() * d.H));
  for (idx b = 0; b < d.b_n; ++b)
    for (idx s = 0; s < d.s_n; ++s)
      for (idx h = 0; h < d.H; ++h)
        x[(b * d.s_n + s) * d.H + h] = unit(stream, ((d.b_lo + b) * d.S + d.s_lo + s) * d.H + h);
  target = teacher(x, d.tokens_sp());
}

// ---------------------------------------------------------------------------------------------
// The model: one code path for the distributed run and the reference; only the Shard (what this
// device holds) and the Collectives differ.

struct Param {
  std::vector<float> w, g, m, v;  // weights, gradient, Adam moments (this device's shard)
};

class Model {
 public:
  Model(const Options& o, const Shard& d, Collectives& comm) : o_(o), d_(d), comm_(comm) {
    for (int l = 0; l < o.layers; ++l) {
      w1_.push_back({make_w1(stream_of(o.seed, 3, l, 1), d, 1.0f / std::sqrt(float(d.H))), {}, {}, {}});
      w2_.push_back({make_w2(stream_of(o.seed, 3, l, 2), d, 0.25f / std::sqrt(float(d.F))), {}, {}, {}});
    }
    for (Param* p : params()) {
      p->m.assign(p->w.size(), 0.0f);
      p->v.assign(p->w.size(), 0.0f);
    }
    xf_.resize(o.layers);
    h_.resize(o.layers);
    a_.resize(o.layers);
  }

  // One training step on this device's tokens x (sequence-parallel layout) with targets t.
  // Returns the global mean squared error before the update.
  double step(const std::vector<float>& x, const std::vector<float>& t) {
    const idx n = d_.tokens(), ns = d_.tokens_sp(), H = d_.H, f = d_.f_n;
    // Forward.
    y_ = x;
    for (int l = 0; l < o_.layers; ++l) {
      comm_.gather_seq(y_, xf_[l]);  // [n, H]
      h_[l].resize(static_cast<std::size_t>(n * f));
      matmul(xf_[l].data(), w1_[l].w.data(), h_[l].data(), n, H, f);  // column-parallel
      a_[l].resize(h_[l].size());
      std::transform(h_[l].begin(), h_[l].end(), a_[l].begin(), gelu);
      part_.resize(static_cast<std::size_t>(n * H));
      matmul(a_[l].data(), w2_[l].w.data(), part_.data(), n, f, H);  // row-parallel: pending sum
      comm_.scatter_seq(part_, sp_);
      for (idx i = 0; i < ns * H; ++i) y_[i] += sp_[i];  // residual
    }
    // Loss: the mean over all B S H elements; each device sums its own tokens.
    const double scale = 1.0 / static_cast<double>(d_.B * d_.S * d_.H);
    double local = 0;
    g_.resize(y_.size());
    for (std::size_t i = 0; i < y_.size(); ++i) {
      const double e = static_cast<double>(y_[i]) - t[i];
      local += e * e;
      g_[i] = static_cast<float>(2.0 * e * scale);
    }
    const double loss = comm_.sum(local * scale);
    // Backward: g_ is the gradient of the loss w.r.t. the current sequence-parallel activation.
    for (int l = o_.layers - 1; l >= 0; --l) {
      comm_.gather_seq(g_, gf_);  // gradient of the reduce-scatter: an all-gather
      part_.resize(static_cast<std::size_t>(f * H));
      matmul_tn(a_[l].data(), gf_.data(), part_.data(), n, f, H);  // dW2, pending sum over dp
      comm_.reduce_grad(2, part_, w2_[l].g);
      wt_.resize(w2_[l].w.size());
      transpose(w2_[l].w.data(), wt_.data(), f, H);
      da_.resize(static_cast<std::size_t>(n * f));
      matmul(gf_.data(), wt_.data(), da_.data(), n, H, f);
      for (std::size_t i = 0; i < da_.size(); ++i) da_[i] *= gelu_grad(h_[l][i]);
      part_.resize(static_cast<std::size_t>(H * f));
      matmul_tn(xf_[l].data(), da_.data(), part_.data(), n, H, f);  // dW1, pending sum over dp
      comm_.reduce_grad(1, part_, w1_[l].g);
      transpose(w1_[l].w.data(), wt_.data(), H, f);
      part_.resize(static_cast<std::size_t>(n * H));
      matmul(da_.data(), wt_.data(), part_.data(), n, f, H);  // dx, pending sum over tp
      comm_.scatter_seq(part_, sp_);  // gradient of the all-gather: a reduce-scatter
      for (idx i = 0; i < ns * H; ++i) g_[i] += sp_[i];  // plus the residual path
    }
    update();
    return loss;
  }

 private:
  std::vector<Param*> params() {
    std::vector<Param*> r;
    for (auto& p : w1_) r.push_back(&p);
    for (auto& p : w2_) r.push_back(&p);
    return r;
  }

  void update() {
    ++t_;
    if (o_.optimizer == "sgd") {
      for (Param* p : params())
        for (std::size_t i = 0; i < p->w.size(); ++i) p->w[i] -= static_cast<float>(o_.lr) * p->g[i];
      return;
    }
    constexpr double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const float c1 = static_cast<float>(o_.lr / (1.0 - std::pow(b1, t_)));
    const float c2 = static_cast<float>(1.0 / (1.0 - std::pow(b2, t_)));
    for (Param* p : params())
      for (std::size_t i = 0; i < p->w.size(); ++i) {
        const float g = p->g[i];
        p->m[i] = float(b1) * p->m[i] + float(1 - b1) * g;
        p->v[i] = float(b2) * p->v[i] + float(1 - b2) * g * g;
        p->w[i] -= c1 * p->m[i] / (std::sqrt(c2 * p->v[i]) + float(eps));
      }
  }

  const Options& o_;
  Shard d_;
  Collectives& comm_;
  std::vector<Param> w1_, w2_;
  int t_ = 0;
  // Saved for the backward pass, per block: gathered input, pre-activation, activation.
  std::vector<std::vector<float>> xf_, h_, a_;
  std::vector<float> y_, g_, gf_, sp_, part_, da_, wt_;  // scratch, reused every step
};

// ---------------------------------------------------------------------------------------------

Shard shard_of(reshard::Context& ctx, const Options& o) {
  Shard d{o.batch, o.seq, o.hidden, o.ffn};
  const auto& m = ctx.mesh();
  const reshard::Box sp = ctx.local_block(reshard::Type::parse(fmt::format("f32[{}{{dp}}, {}{{tp}}, {}]", o.batch, o.seq, o.hidden), m));
  const reshard::Box w1 = ctx.local_block(reshard::Type::parse(fmt::format("f32[{}, {}{{tp}}]", o.hidden, o.ffn), m));
  d.b_lo = sp.dims[0].lo, d.b_n = sp.dims[0].extent();
  d.s_lo = sp.dims[1].lo, d.s_n = sp.dims[1].extent();
  d.f_lo = w1.dims[1].lo, d.f_n = w1.dims[1].extent();
  return d;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

int run(const Options& o, int world, int me) {
  reshard::ExecOptions exec;
  exec.check_every_call = o.check_every_call;  // off: plans and sizes are checked on first use
  reshard::Context ctx(reshard::Mesh::parse(fmt::format("dp={},tp={}", o.dp, o.tp)), MPI_COMM_WORLD, {}, exec);
  const Shard d = shard_of(ctx, o);
  ReshardCollectives comm(ctx, d, o.split_wait);
  Model model(o, d, comm);

  // The reference: the same model on one process (rank 0), same initial weights and data.
  const Shard whole{o.batch, o.seq, o.hidden, o.ffn, 0, o.batch, 0, o.seq, 0, o.ffn};
  const Teacher teacher(o, whole);
  LocalCollectives local;
  std::unique_ptr<Model> ref;
  if (o.reference && me == 0) ref = std::make_unique<Model>(o, whole, local);

  if (me == 0) {
    fmt::print("train_tp_mlp: mesh {} ({} ranks), batch {} seq {} hidden {} ffn {}, {} block(s), {} lr {:g}, {} steps\n",
               ctx.mesh(), world, o.batch, o.seq, o.hidden, o.ffn, o.layers, o.optimizer, o.lr, o.steps);
    fmt::print("reshards (plans):\n{}", comm.describe());
    if (!o.reference) fmt::print("reference run off: losses are not checked\n");
  }

  std::vector<double> step_s, reshard_s, wait_s, losses;
  std::vector<float> x, t, rx, rt;
  double worst_rel = 0;
  bool ok = true;
  for (int s = 0; s < o.steps && ok; ++s) {
    make_batch(o, s, d, teacher, x, t);  // data loading is not part of the step's time
    MPI_Barrier(MPI_COMM_WORLD);
    comm.take_seconds();
    comm.take_wait_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    const double loss = model.step(x, t);
    step_s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    reshard_s.push_back(comm.take_seconds());
    wait_s.push_back(comm.take_wait_seconds());
    losses.push_back(loss);

    if (me == 0) {
      std::string line = fmt::format("step {:>4}  loss {:.6e}", s + 1, loss);
      if (ref) {
        make_batch(o, s, whole, teacher, rx, rt);
        const double r = ref->step(rx, rt);
        const double rel = std::abs(loss - r) / std::max(std::abs(r), 1e-30);
        worst_rel = std::max(worst_rel, rel);
        line += fmt::format("  reference {:.6e}  rel diff {:.1e}", r, rel);
        if (!(rel <= o.tol)) {
          line += fmt::format("  MISMATCH (tolerance {:g})", o.tol);
          ok = false;
        }
      }
      if (!ok || s == 0 || s + 1 == o.steps || (s + 1) % o.print_every == 0) fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    int flag = ok;  // rank 0's verdict (control flow of the harness, not model communication)
    MPI_Bcast(&flag, 1, MPI_INT, 0, MPI_COMM_WORLD);
    ok = flag != 0;
  }

  // Per step, the slowest rank's time and reshard time.
  const int n = static_cast<int>(step_s.size());
  std::vector<double> step_max(n), reshard_max(n), wait_max(n);
  MPI_Reduce(step_s.data(), step_max.data(), n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(reshard_s.data(), reshard_max.data(), n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  MPI_Reduce(wait_s.data(), wait_max.data(), n, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  // Per rank, the mean reshard time and compute time (step minus reshard) after the first step:
  // the spread shows how much of a reshard call is waiting for slower ranks.
  const int skip = n > 1 ? 1 : 0;
  double mine[3] = {0, 0, 0};  // compute, reshard, wait
  for (int i = skip; i < n; ++i) {
    mine[0] += (step_s[i] - reshard_s[i] - wait_s[i]) / (n - skip);
    mine[1] += reshard_s[i] / (n - skip);
    mine[2] += wait_s[i] / (n - skip);
  }
  std::vector<double> per_rank(me == 0 ? 3 * world : 0);
  MPI_Gather(mine, 3, MPI_DOUBLE, per_rank.data(), 3, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (me != 0) return ok ? 0 : 1;

  if (!ok) {
    fmt::print(stderr, "train_tp_mlp: the distributed loss differs from the reference run\n");
    return 1;
  }
  const double first = losses.front(), last = losses.back();
  const bool fell = last < o.drop * first;
  fmt::print("loss {:.4e} -> {:.4e} (x{:.3f}; must fall below x{:g}): {}\n", first, last, last / first, o.drop,
             fell ? "ok" : "FAILED");
  if (o.reference) fmt::print("distributed vs reference loss: max rel diff {:.1e} (tolerance {:g}): ok\n", worst_rel, o.tol);
  // Steady state: the first step also synthesizes plans and allocates workspace.
  std::vector<double> st(step_max.begin() + skip, step_max.end()), rs(reshard_max.begin() + skip, reshard_max.end());
  const double sum_st = std::accumulate(st.begin(), st.end(), 0.0), sum_rs = std::accumulate(rs.begin(), rs.end(), 0.0);
  fmt::print("time per step (steps {}..{}, max over ranks): median {:.3f} ms, mean {:.3f} ms; first step {:.3f} ms\n",
             skip + 1, n, 1e3 * median(st), 1e3 * sum_st / std::max<size_t>(1, st.size()), 1e3 * step_max[0]);
  fmt::print("in reshard: median {:.3f} ms per step, {:.1f}% of step time ({} reshards per step)\n", 1e3 * median(rs),
             100.0 * sum_rs / std::max(sum_st, 1e-300), comm.calls() / std::max(1, n));
  if (o.split_wait) {
    const double sum_w = std::accumulate(wait_max.begin() + skip, wait_max.end(), 0.0);
    fmt::print("waiting for the slowest rank before reshards (barrier, --split-wait): {:.3f} ms per step, {:.1f}% of step time\n",
               1e3 * sum_w / std::max<size_t>(1, st.size()), 100.0 * sum_w / std::max(sum_st, 1e-300));
  }
  std::string ranks;
  for (int r = 0; r < world; ++r)
    ranks += fmt::format("{}{:.1f}/{:.1f}{}", r ? ", " : "", 1e3 * per_rank[3 * r], 1e3 * per_rank[3 * r + 1],
                         o.split_wait ? fmt::format("/{:.1f}", 1e3 * per_rank[3 * r + 2]) : "");
  fmt::print("per rank, mean ms of compute / reshard{}: {}\n", o.split_wait ? " / wait" : "", ranks);
  return fell ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int world = 1, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);

  Options o;
  CLI::App app{"Tensor- and sequence-parallel MLP training on reshard (run under mpirun)"};
  app.add_option("--steps", o.steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--batch", o.batch, "global batch B (split over dp)")->check(CLI::PositiveNumber);
  app.add_option("--seq", o.seq, "sequence length S (split over tp between blocks)")->check(CLI::PositiveNumber);
  app.add_option("--hidden", o.hidden, "hidden size H")->check(CLI::PositiveNumber);
  app.add_option("--ffn", o.ffn, "ffn size F (split over tp)")->check(CLI::PositiveNumber);
  app.add_option("--layers", o.layers, "MLP blocks")->check(CLI::PositiveNumber);
  app.add_option("--dp", o.dp, "data-parallel size (default: 2 when the world size is even and >= 4, else 1)");
  app.add_option("--tp", o.tp, "tensor-parallel size (default: world size / dp)");
  app.add_option("--optimizer", o.optimizer, "adam or sgd")->check(CLI::IsMember({"adam", "sgd"}));
  app.add_option("--lr", o.lr, "learning rate (default 0.4 / hidden for adam, 1 for sgd)");
  app.add_option("--tol", o.tol, "relative tolerance between distributed and reference loss");
  app.add_option("--drop", o.drop, "the last loss must be below this fraction of the first");
  app.add_flag("!--no-reference", o.reference, "skip the one-process reference run (and the loss check)");
  app.add_flag("--check-every-call", o.check_every_call, "agree on plan and buffer sizes before every reshard");
  app.add_flag("--split-wait", o.split_wait, "time a barrier before each reshard apart (waiting for other ranks vs moving data)");
  app.add_option("--print-every", o.print_every, "print the loss every N steps")->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "seed of weights, teacher and data");
  app.add_option("--backend", o.backend, "communication backend: mpi (host memory)")->check(CLI::IsMember({"mpi", "nccl"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = me == 0 ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 2);
    MPI_Finalize();
    return rc;
  }
  if (o.lr == 0) o.lr = o.optimizer == "adam" ? 0.4 / o.hidden : 1.0;
  if (o.dp == 0 && o.tp == 0) o.dp = world % 2 == 0 && world >= 4 ? 2 : 1;
  if (o.dp == 0) o.dp = o.tp > 0 && world % o.tp == 0 ? world / o.tp : 0;
  if (o.tp == 0) o.tp = o.dp > 0 && world % o.dp == 0 ? world / o.dp : 0;
  std::string err;
  if (o.backend != "mpi")
    err = fmt::format("backend {} is not available: this build runs reshard on MPI (host memory) only", o.backend);
  else if (o.dp <= 0 || o.tp <= 0 || o.dp * o.tp != world)
    err = fmt::format("--dp {} x --tp {} must equal the number of ranks, {}", o.dp, o.tp, world);
  if (!err.empty()) {  // every rank sees the same options, so every rank stops here
    if (me == 0) fmt::print(stderr, "train_tp_mlp: {}\n", err);
    MPI_Finalize();
    return 2;
  }

  int rc = 1;
  try {
    rc = run(o, world, me);
  } catch (const std::exception& e) {
    fmt::print(stderr, "train_tp_mlp: rank {}: {}\n", me, e.what());
    MPI_Abort(MPI_COMM_WORLD, 2);  // the other ranks may be inside a collective
  }
  MPI_Finalize();
  return rc;
}
