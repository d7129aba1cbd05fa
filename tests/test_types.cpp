// Mesh and type parsing, printing and block queries (docs/design.md 1-2).
#include <catch2/catch.hpp>

#include "reshard/cases.hpp"
#include "reshard/error.hpp"
#include "reshard/mesh.hpp"
#include "reshard/type.hpp"

using namespace reshard;

TEST_CASE("mesh parses, numbers devices row-major and prints back") {
  Mesh m = Mesh::parse(" x = 2 , y=4 ");
  REQUIRE(m.num_axes() == 2);
  CHECK(m.num_devices() == 8);
  CHECK(m.to_string() == "x=2,y=4");
  CHECK(Mesh::parse(m.to_string()) == m);
  // rank = 4x + y
  for (int r = 0; r < 8; ++r) {
    CHECK(m.coord(r, 0) == r / 4);
    CHECK(m.coord(r, 1) == r % 4);
  }
  CHECK(Mesh::parse("dp=2,tp=4,pp=1").num_devices() == 8);
}

TEST_CASE("bad meshes name the problem and its position") {
  struct Bad {
    const char* text;
    const char* says;
    std::size_t pos;
  };
  for (Bad b : {Bad{"", "empty", 0}, Bad{"x=0", "size 0", 2}, Bad{"x=-2", "positive", 2},
                Bad{"x=2,x=3", "twice", 4}, Bad{"x=2,", "axis name", 4}, Bad{"x2", "'='", 2},
                Bad{"1x=2", "axis name", 0}, Bad{"x=2;y=2", "unexpected ';'", 3},
                Bad{"x=99999999999999999999", "too large", 2}, Bad{"x=65536,y=65536", "too many", 10}}) {
    INFO(b.text);
    try {
      Mesh::parse(b.text);
      FAIL("no error");
    } catch (const ParseError& e) {
      CHECK_THAT(e.what(), Catch::Contains(b.says));
      CHECK(e.position() == b.pos);
    }
  }
}

TEST_CASE("types parse and print back") {
  Mesh m = Mesh::parse("x=2,y=2,z=2");
  for (const char* text : {"f32[4096{x}, 1024{y,z}]", "f32[1024, 4096]", "bf16[64{x}, 128, 1024] sum{y}",
                           "f64[]", "i8[3{z}] max{x,y}", "u8[1, 2, 3]", "i64[5{}]"}) {
    INFO(text);
    Type t = Type::parse(text, m);
    CHECK(Type::parse(t.to_string(), m) == t);
  }
  Type t = Type::parse("bf16[64{x},128,1024{y,z}] sum{w}", Mesh::parse("x=2,y=2,z=2,w=3"));
  CHECK(t.dtype == DType::bf16);
  CHECK(t.dims[2].axes == std::vector<std::string>{"y", "z"});
  CHECK(t.op == ReduceOp::sum);
  CHECK(t.to_string() == "bf16[64{x}, 128, 1024{y,z}] sum{w}");
}

TEST_CASE("bad types name the problem and its position") {
  Mesh m = Mesh::parse("x=2,y=4");
  struct Bad {
    const char* text;
    const char* says;
    std::size_t pos;
  };
  for (Bad b : {Bad{"f31[4]", "unknown dtype 'f31'", 0}, Bad{"f32[4{q}]", "'q' is not an axis", 6},
                Bad{"f32[4{x},8{x}]", "used twice", 11}, Bad{"f32[4{x}] sum{x}", "used twice", 14},
                Bad{"f32[0]", "size 0", 4}, Bad{"f32[-3]", "positive", 4}, Bad{"f32[4", "']'", 5},
                Bad{"f32[4{x]", "'}'", 7}, Bad{"f32[4] avg{x}", "unknown reduction 'avg'", 7},
                Bad{"f32[4] sum{}", "axis name", 11}, Bad{"f32[4] sum{x} extra", "unexpected", 14},
                Bad{"", "dtype", 0}, Bad{"f32", "'['", 3}, Bad{"f32[4,]", "size of dim 1", 6},
                Bad{"f32[4]]", "unexpected ']'", 6}}) {
    INFO(b.text);
    try {
      Type::parse(b.text, m);
      FAIL("no error");
    } catch (const ParseError& e) {
      CHECK_THAT(e.what(), Catch::Contains(b.says));
      CHECK(e.position() == b.pos);
    }
  }
}

TEST_CASE("ceil blocks: uneven sizes, empty trailing blocks") {
  // 13 over 4: blocks of 4: [0,4) [4,8) [8,12) [12,13)
  CHECK(ceil_block(13, 4, 0) == Interval{0, 4});
  CHECK(ceil_block(13, 4, 3) == Interval{12, 13});
  // 2 over 4: blocks of 1, the last two empty
  CHECK(ceil_block(2, 4, 1) == Interval{1, 2});
  CHECK(ceil_block(2, 4, 2).extent() == 0);
  CHECK(ceil_block(2, 4, 3).extent() == 0);
  // 10 over 6: blocks of 2, the sixth empty
  CHECK(ceil_block(10, 6, 5) == Interval{10, 10});
}

TEST_CASE("block of a device: mixed radix, major axis first") {
  Mesh m = Mesh::parse("x=2,y=4");
  Type t = Type::parse("f32[32{x,y},16]", m);
  for (int r = 0; r < 8; ++r) {
    int x = r / 4, y = r % 4;
    Box b = t.block(m, r);
    CHECK(b.dims[0] == Interval{4 * (4 * x + y), 4 * (4 * x + y) + 4});
    CHECK(b.dims[1] == Interval{0, 16});
    CHECK(t.local_bytes(m, r) == 4 * 16 * 4);
  }
  Type u = Type::parse("f32[32{y,x},16]", m);
  CHECK(u.block(m, 1).dims[0] == Interval{8, 12});  // (x=0,y=1): block 2y+x = 2
  Type s = Type::parse("f64[] sum{x}", m);
  CHECK(s.local_elements(m, 3) == 1);
  CHECK(s.max_local_bytes(m) == 8);
  Type e = Type::parse("f32[2{x,y},8]", m);
  CHECK(e.local_elements(m, 7) == 0);
  CHECK(e.max_local_bytes(m) == 32);
}

TEST_CASE("validate catches types built through the API that do not fit the mesh") {
  Mesh m = Mesh::parse("x=2");
  Type t;
  t.dims = {{4, {"y"}}};
  CHECK_THROWS_WITH(t.validate(m), Catch::Contains("'y'"));
  t.dims = {{4, {"x"}}};
  t.op = ReduceOp::sum;
  t.reduce_axes = {"x"};
  CHECK_THROWS_WITH(t.validate(m), Catch::Contains("used twice"));
  t.reduce_axes.clear();
  CHECK_THROWS_WITH(t.validate(m), Catch::Contains("reduce clause"));
}

TEST_CASE("case files") {
  auto cases = parse_cases("# c\n a | x=2 | f32[4{x}] | f32[4]  # tight\n\nb|x=1|f32[1]|f32[1]\n");
  REQUIRE(cases.size() == 2);
  CHECK(cases[0].name == "a");
  CHECK(cases[0].tight);
  CHECK(cases[0].line == 2);
  CHECK_FALSE(cases[1].tight);
  CHECK_THROWS_WITH(parse_cases("a | x=2 | f32[4]\n", "f"), Catch::Contains("f:1"));
  CHECK(read_cases(RESHARD_CASES_DIR "/public.txt").size() >= 30);
  CHECK_THROWS_WITH(read_cases("/nonexistent/cases.txt"), Catch::Contains("cannot read"));
}
