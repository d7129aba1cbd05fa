#pragma once
// Random cross-mesh cases for property tests: two meshes placed on equal, overlapping or
// disjoint ranks of a world of at most `world` ranks, and arrays with types on each (uneven
// sizes, replication, pending reductions in the source and the target).
#include <algorithm>
#include <numeric>

#include "random_types.hpp"
#include "reshard/xplan.hpp"

namespace reshard::test {

struct RandomXCase {
  Mesh src_mesh, dst_mesh;
  std::vector<XArray> arrays;
  const char* placement = "";
};

class XGen {
 public:
  explicit XGen(std::uint64_t seed) : g_(seed), rng_(seed * 7919 + 1) {}

  // A mesh of at most `max_devices` devices on `ranks` (taken in a shuffled order).
  Mesh on_ranks(int max_devices, std::vector<int> ranks) {
    Mesh m = g_.mesh(max_devices);
    ranks.resize(static_cast<std::size_t>(m.num_devices()));
    return Mesh(m.axes(), ranks);
  }

  RandomXCase next(int world, int max_arrays = 3) {
    RandomXCase c;
    std::vector<int> all(static_cast<std::size_t>(world));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng_);
    const int kind = g_.uniform(0, world >= 2 ? 2 : 0);
    if (kind == 0) {  // the same ranks (maybe different axes)
      c.placement = "equal";
      c.src_mesh = on_ranks(world, all);
      std::vector<int> same(c.src_mesh.num_devices());
      for (int d = 0; d < c.src_mesh.num_devices(); ++d) same[d] = c.src_mesh.rank_of(d);
      std::vector<Axis> axes = reshape(c.src_mesh.num_devices());
      c.dst_mesh = Mesh(axes, g_.uniform(0, 1) ? same : shuffled(same));
    } else if (kind == 1) {  // disjoint halves
      c.placement = "disjoint";
      const int cut = g_.uniform(1, world - 1);
      c.src_mesh = on_ranks(cut, std::vector<int>(all.begin(), all.begin() + cut));
      c.dst_mesh = on_ranks(world - cut, std::vector<int>(all.begin() + cut, all.end()));
    } else {  // overlapping
      c.placement = "overlapping";
      c.src_mesh = on_ranks(world, all);
      c.dst_mesh = on_ranks(world, shuffled(all));
    }
    const int n = g_.uniform(1, max_arrays);
    for (int i = 0; i < n; ++i) {
      RandomCase rc = g_.next(1);  // only for its shape and dtype
      const ReduceOp ops[] = {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod};
      const ReduceOp op = ops[g_.uniform(0, 3)];
      Type src = g_.type(c.src_mesh.without_ranks(), rc.src.dtype, rc.src.global_shape(), op, true);
      Type dst = g_.type(c.dst_mesh.without_ranks(), rc.src.dtype, rc.src.global_shape(), op, true);
      c.arrays.push_back({fmt::format("a{}", i), src, dst});
    }
    return c;
  }

  int uniform(int lo, int hi) { return g_.uniform(lo, hi); }

 private:
  std::vector<int> shuffled(std::vector<int> v) {
    std::shuffle(v.begin(), v.end(), rng_);
    return v;
  }
  // Axes whose sizes multiply to n: n's factors in a random grouping.
  std::vector<Axis> reshape(int n) {
    std::vector<int> f;
    for (int k = 2; n > 1;)
      if (n % k == 0) f.push_back(k), n /= k;
      else ++k;
    std::shuffle(f.begin(), f.end(), rng_);
    std::vector<Axis> axes;
    const char* names[] = {"p", "q", "r", "s", "t", "u", "v", "w"};
    for (int x : f) {
      if (!axes.empty() && g_.uniform(0, 1)) axes.back().size *= x;
      else axes.push_back({names[axes.size()], x});
    }
    if (axes.empty() || g_.uniform(0, 3) == 0) axes.push_back({names[axes.size()], 1});
    return axes;
  }

  TypeGen g_;
  std::mt19937_64 rng_;
};

}  // namespace reshard::test
