// libFuzzer target for the program parser of automatic sharding (issue 16), and for what runs on
// a parsed program: printing, the search and the in-process run.
//
// Input: program text (docs/auto.md). Expected outcome for bad text: ParseError, whose position
// lies within the text. Everything else is a finding and aborts the process:
//   - the parser throwing anything but ParseError (any other exception, or a crash);
//   - print-then-parse not giving back the same program text;
//   - on small programs (at most 8 devices, 8 ops, 4096 elements per tensor): search() failing
//     without a memory cap, choosing an output type with a pending sum, or an assignment whose
//     in-process run (run_virtual) differs from the single-process reference.
// Programs without a mesh statement are also parsed with the mesh `x=2,y=2` given, as --mesh does.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "reshard/auto/compute.hpp"
#include "reshard/auto/program.hpp"
#include "reshard/auto/search.hpp"
#include "reshard/error.hpp"

namespace {

constexpr std::size_t kMaxInput = 2048;

[[noreturn]] void finding(const std::string& what, std::string_view input) {
  std::fprintf(stderr, "fuzz_program finding: %s\n  input: %.*s\n", what.c_str(), static_cast<int>(input.size()),
               input.data());
  std::fflush(stderr);
  std::abort();
}

bool small(const reshard::automap::Program& p) {
  if (p.mesh.num_devices() > 8 || p.ops.size() > 8) return false;
  for (const auto& t : p.tensors)
    if (t.elements() > 4096) return false;
  return true;
}

bool finite(const reshard::automap::Array& a) {
  for (float x : a.data)
    if (!std::isfinite(x) || std::abs(x) > 1e6f) return false;
  return true;
}

void exercise(const reshard::automap::Program& p, std::string_view input) {
  using namespace reshard;
  using namespace reshard::automap;
  std::string text = p.to_string();
  try {
    Program q = parse_program(text);
    if (q.to_string() != text) finding("print-then-parse changed the program:\n" + text + "---\n" + q.to_string(), input);
  } catch (const Error& e) {
    finding(std::string("the printed program does not parse: ") + e.what() + "\n" + text, input);
  }
  if (!small(p)) return;
  Assignment a;
  try {
    SearchOptions o;
    o.beam_width = 4;
    a = search(p, o);
  } catch (const std::exception& e) {
    finding(std::string("search failed without a cap: ") + e.what(), input);
  }
  for (const Type& t : a.output_types)
    if (t.op != ReduceOp::none) finding("an output type with a pending reduction: " + t.to_string(), input);
  auto ref = reference(p);
  auto got = run_virtual(p, a);
  for (std::size_t j = 0; j < p.outputs.size(); ++j) {
    const Array& r = ref[p.outputs[j]];
    if (!finite(r)) continue;  // chained products can overflow f32; nothing to compare
    if (relative_error(got[j], r) > 1e-3)
      finding("the chosen assignment computes another value than the reference:\n" + to_string(p, a), input);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace reshard;
  if (size > kMaxInput) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (int with_mesh = 0; with_mesh < 2; ++with_mesh) {
    try {
      auto p = with_mesh ? automap::parse_program(input, Mesh::parse("x=2,y=2")) : automap::parse_program(input);
      exercise(p, input);
    } catch (const ParseError& e) {
      if (e.position() > e.text().size() || e.text() != input)
        finding("a ParseError whose position or text is not the input's: " + std::string(e.what()), input);
    } catch (const std::exception& e) {
      finding(std::string("the parser threw something other than ParseError: ") + e.what(), input);
    }
  }
  return 0;
}
