// The MPI backend's reductions against the host kernels' reduce_into (the simulator's
// arithmetic): every dtype and op, on values that overflow narrow integers (they must wrap,
// as C++ unsigned arithmetic does, never saturate).
#include <random>

#include <catch2/catch.hpp>

#include "mpi_test.hpp"
#include "reshard/host_kernels.hpp"

using namespace reshard;

namespace {

// Rank r's contribution: pseudo-random values spanning each dtype's range (integer-valued
// and small for the float types, so that any order of summation is exact: bf16 holds integers
// up to 256 exactly, and 8 ranks of values below 16 stay under that).
std::vector<std::byte> values(DType t, int rank, std::int64_t n) {
  std::vector<std::byte> v(static_cast<std::size_t>(n) * size_of(t));
  std::mt19937_64 rng(1234 + rank);
  for (std::int64_t k = 0; k < n; ++k) {
    auto bits = static_cast<std::int64_t>(rng());
    double x = is_float(t) ? static_cast<double>(bits % 16) : static_cast<double>(bits % 100000);
    store_as(v.data(), k, t, x);
  }
  return v;
}

}  // namespace

TEST_CASE("MPI reductions agree with the host kernels for every dtype and op", "[backend]") {
  const int np = test::world_size();
  Context ctx(Mesh({{"x", np}}));
  Group& world = ctx.communicator()->world();
  const std::int64_t n = 1000;
  for (DType t : kAllDTypes)
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::prod}) {
      if (is_float(t) && op == ReduceOp::prod) continue;  // products of 64 values overflow f16
      std::vector<std::byte> expect = values(t, 0, n);
      for (int r = 1; r < np; ++r) reduce_into(expect.data(), values(t, r, n).data(), n, t, op);
      std::vector<std::byte> mine = values(t, world.rank(), n), got(mine.size());
      world.allreduce(mine.data(), got.data(), n, t, op);
      std::int64_t bad = 0;
      for (std::int64_t k = 0; k < n; ++k) bad += load_as(got.data(), k, t) != load_as(expect.data(), k, t);
      INFO(name_of(t) << " " << name_of(op));
      CHECK(bad == 0);
    }
}

namespace {

// The box rank `from` sends to rank `to` (both sides compute it): a random [a, b, c] extent,
// the same for any pair in this call, at a random corner of the sender's [8, 9, 10] array, and
// at a random corner of the receiver's region for `from` (rows from*6 .. from*6+5 of its
// [np*6, 7, 12] array).
struct PairBoxes {
  BoxMsg send, recv;
};
PairBoxes pair_boxes(int from, int to, int np, std::uint64_t seed) {
  std::mt19937_64 rng(seed * 1000003 + static_cast<std::uint64_t>(from * 131 + to));
  auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  const std::vector<std::int64_t> in_shape{8, 9, 10}, out_shape{np * 6, 7, 12};
  std::vector<std::int64_t> ext{pick(0, 6), pick(1, 7), pick(1, 10)};
  if (pick(0, 5) == 0) ext[2] = 10;  // whole rows: partly contiguous
  PairBoxes b;
  b.send = {to, in_shape, {pick(0, 8 - ext[0]), pick(0, 9 - ext[1]), pick(0, 10 - ext[2])}, ext};
  b.recv = {from, out_shape, {from * 6 + pick(0, 6 - ext[0]), pick(0, 7 - ext[1]), pick(0, 12 - ext[2])}, ext};
  return b;
}

std::vector<std::int32_t> send_array(int rank) {
  std::vector<std::int32_t> a(8 * 9 * 10);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::int32_t>(rank * 100000 + static_cast<int>(i));
  return a;
}

}  // namespace

TEST_CASE("MPI moves strided boxes in place, all-to-all and point-to-point", "[backend]") {
  const int np = test::world_size();
  Context ctx(Mesh({{"x", np}}));
  Group& world = ctx.communicator()->world();
  const int me = world.rank();
  REQUIRE(world.moves_boxes());
  for (std::uint64_t seed = 1; seed <= 20; ++seed)
    for (const bool all_to_all : {true, false}) {
      std::vector<BoxMsg> sends, recvs;
      for (int p = 0; p < np; ++p) {
        if (p == me) continue;
        // Point-to-point: only some pairs talk.
        if (!all_to_all && (seed + static_cast<std::uint64_t>(me + p)) % 3 == 0) continue;
        sends.push_back(pair_boxes(me, p, np, seed).send);
        recvs.push_back(pair_boxes(p, me, np, seed).recv);
      }
      auto boxes = world.prepare_boxes(sends, recvs, DType::i32);
      REQUIRE(boxes);
      const std::vector<std::int32_t> in = send_array(me);
      std::vector<std::int32_t> out(static_cast<std::size_t>(np) * 6 * 7 * 12, -1), want = out;
      for (const BoxMsg& r : recvs) {
        const BoxMsg s = pair_boxes(r.peer, me, np, seed).send;
        const std::vector<std::int32_t> theirs = send_array(r.peer);
        copy_box(theirs.data(), s.shape, s.offset, want.data(), r.shape, r.offset, r.extent, sizeof(std::int32_t));
      }
      boxes->run(in.data(), out.data());
      INFO("seed " << seed << (all_to_all ? " all-to-all" : " point-to-point"));
      CHECK(out == want);
      CHECK(in == send_array(me));
    }
}

TEST_CASE("prepare_boxes refuses messages it cannot move", "[backend]") {
  const int np = test::world_size();
  Context ctx(Mesh({{"x", np}}));
  Group& world = ctx.communicator()->world();
  const BoxMsg self{world.rank(), {4}, {0}, {4}};
  CHECK_THROWS_WITH(world.prepare_boxes(std::vector<BoxMsg>{self}, {}, DType::f32), Catch::Contains("rank"));
  const BoxMsg outside{(world.rank() + 1) % np, {4}, {2}, {4}};
  if (np > 1)
    CHECK_THROWS_WITH(world.prepare_boxes(std::vector<BoxMsg>{outside}, {}, DType::f32),
                      Catch::Contains("does not fit"));
}
