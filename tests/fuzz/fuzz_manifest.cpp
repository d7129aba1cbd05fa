// libFuzzer target for checkpoint_reshard's two JSON readers (examples/checkpoint_manifest.hpp,
// issue 15): each input is read both as one array's manifest and as the arrays.json list of a
// checkpoint of several arrays. Expected outcomes: a value, or std::runtime_error naming the
// problem. Findings (abort): any other exception, a crash (deep nesting used to overflow the
// stack), or a value that does not survive its own text: manifest_text() / arrays_text() of what
// was read must read back to the same mesh, type and files / the same names.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "checkpoint_manifest.hpp"

namespace {
[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_manifest: finding: %s\n", what.c_str());
  std::abort();
}

bool same(const checkpoint::Manifest& a, const checkpoint::Manifest& b) {
  if (!(a.mesh == b.mesh) || !(a.type == b.type) || a.files.size() != b.files.size()) return false;
  for (std::size_t i = 0; i < a.files.size(); ++i) {
    const auto &x = a.files[i], &y = b.files[i];
    if (x.name != y.name || x.device != y.device || !(x.box == y.box) || x.bytes != y.bytes || x.crc != y.crc) return false;
  }
  return true;
}

void read_arrays(const std::string& text) {
  std::vector<std::string> names;
  try {
    names = checkpoint::parse_arrays(text);
  } catch (const std::runtime_error&) {
    return;
  } catch (const std::exception& e) {
    finding(std::string("arrays.json: unexpected exception: ") + e.what());
  }
  try {
    if (checkpoint::parse_arrays(checkpoint::arrays_text(names)) != names) finding("arrays_text does not read back");
  } catch (const std::exception& e) {
    finding(std::string("arrays_text does not parse: ") + e.what());
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 1 << 16) return 0;  // the reader's own limit is tested by the selftest
  const std::string text(reinterpret_cast<const char*>(data), size);
  read_arrays(text);
  checkpoint::Manifest m;
  try {
    m = checkpoint::parse_manifest(text);
  } catch (const std::runtime_error&) {
    return 0;
  } catch (const std::exception& e) {
    finding(std::string("unexpected exception: ") + e.what());
  }
  try {
    if (!same(m, checkpoint::parse_manifest(checkpoint::manifest_text(m)))) finding("manifest_text does not read back");
  } catch (const std::exception& e) {
    finding(std::string("manifest_text does not parse: ") + e.what());
  }
  return 0;
}
