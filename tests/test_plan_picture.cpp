// Plan pictures (src/plan_picture) on random plans: every frame accounts for every device once,
// the distinct blocks of a frame tile the shown array, the bytes per step match the plan's own
// figures, and the text and SVG show every block.
#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "plan_picture.hpp"
#include "random_types.hpp"
#include "reshard/error.hpp"
#include "reshard/synth.hpp"

using namespace reshard;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("plan pictures account for every device and tile the array") {
  test::TypeGen gen(20261201);
  for (int i = 0; i < 3000; ++i) {
    test::RandomCase c = gen.next(i % 10 == 0 ? 256 : 24);
    INFO("case " << i << ": " << c.mesh << " | " << c.src << " | " << c.dst);
    const Plan plan = synthesize(c.mesh, c.src, c.dst);
    const picture::View v = picture::view_of(plan);
    REQUIRE(v.frames.size() == plan.steps.size() + 1);
    REQUIRE(v.dims.size() == static_cast<std::size_t>(std::min(2, plan.src.rank())));
    REQUIRE(std::is_sorted(v.dims.begin(), v.dims.end()));
    std::int64_t shown = 1;
    for (std::int64_t e : v.extent) shown *= e;
    for (std::size_t k = 0; k < v.frames.size(); ++k) {
      const picture::Frame& f = v.frames[k];
      CHECK(f.type == plan.type_after(static_cast<int>(k) - 1));
      // Every device once: in one block or among the empty ones.
      std::multiset<int> seen(f.empty.begin(), f.empty.end());
      for (const picture::Holding& b : f.blocks) {
        REQUIRE(std::is_sorted(b.devices.begin(), b.devices.end()));
        seen.insert(b.devices.begin(), b.devices.end());
        // Each holder's own block, projected, is this one.
        for (int d : b.devices) {
          const Box full = f.type.block(plan.mesh, d);
          for (std::size_t j = 0; j < v.dims.size(); ++j) CHECK(full.dims[v.dims[j]] == b.box.dims[j]);
        }
      }
      REQUIRE(seen.size() == static_cast<std::size_t>(plan.mesh.num_devices()));
      CHECK(std::set<int>(seen.begin(), seen.end()).size() == seen.size());
      // Distinct blocks are disjoint and cover the shown array: their volumes add up to it.
      std::int64_t covered = 0;
      for (std::size_t a = 0; a < f.blocks.size(); ++a) {
        covered += f.blocks[a].box.volume();
        for (std::size_t b = a + 1; b < f.blocks.size(); ++b) CHECK(intersect(f.blocks[a].box, f.blocks[b].box).empty());
      }
      if (plan.src.global_elements() > 0) CHECK(covered == shown);
      if (k > 0) {
        CHECK(f.recv_max_bytes == plan.stats.step_bytes_recv_max[k - 1]);
      }
    }
    // The SVG: a background, one outline per frame, one rectangle per block.
    const std::string svg = picture::to_svg(v);
    std::size_t blocks = 0;
    for (const picture::Frame& f : v.frames) blocks += f.blocks.size();
    CHECK(count(svg, "<rect") == 1 + v.frames.size() + blocks);
    CHECK(svg.rfind("</svg>\n") == svg.size() - 7);
    // The text: one legend line per block of every frame, when the letters suffice.
    bool fits = true;
    for (const picture::Frame& f : v.frames) fits = fits && f.blocks.size() <= 62;
    if (fits) {
      const std::string text = picture::to_text(v);
      CHECK(count(text, " device") >= blocks);
      CHECK(count(text, "\n  +") == 2 * v.frames.size());
    } else {
      CHECK_THROWS_AS(picture::to_text(v), Error);
    }
  }
}

TEST_CASE("plan picture of the add-a-major-axis example") {
  const Mesh mesh = Mesh::parse("x=2,y=4");
  const Plan plan = synthesize(mesh, Type::parse("f32[32{y},16]", mesh), Type::parse("f32[32{x,y},16]", mesh));
  const picture::View v = picture::view_of(plan);
  REQUIRE(v.frames.size() == 3);
  // Source: four blocks of 8 rows, each on the two devices that differ in x.
  REQUIRE(v.frames[0].blocks.size() == 4);
  CHECK(v.frames[0].blocks[0].devices == std::vector<int>{0, 4});
  CHECK(v.frames[0].blocks[0].box.dims[0] == Interval{0, 8});
  // After the slice device 4 (x=1, y=0) keeps rows [4, 8); after the permute it holds [16, 20).
  // Blocks are listed by first holder: device 1 (x=0, y=1) keeps rows [8, 12), device 4 (x=1,
  // y=0) rows [4, 8); after the permute device 4 holds [16, 20).
  CHECK(v.frames[1].blocks[1].devices == std::vector<int>{1});
  CHECK(v.frames[1].blocks[1].box.dims[0] == Interval{8, 12});
  CHECK(v.frames[1].blocks[4].devices == std::vector<int>{4});
  CHECK(v.frames[1].blocks[4].box.dims[0] == Interval{4, 8});
  CHECK(v.frames[1].recv_max_bytes == 0);
  CHECK(v.frames[2].blocks[4].box.dims[0] == Interval{16, 20});
  // A permuted device receives its whole 4 x 16 float block.
  CHECK(v.frames[2].recv_max_bytes == 256);
  const std::string text = picture::to_text(v);
  CHECK(text.find("A [0, 8) x [0, 16)             devices 0,4") != std::string::npos);
}
