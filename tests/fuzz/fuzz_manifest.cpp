// libFuzzer target for checkpoint_reshard's manifest reader (examples/checkpoint_manifest.hpp,
// issue 15). Input: the manifest's text. Expected outcomes: a Manifest, or std::runtime_error
// naming the problem. Findings (abort): any other exception, a crash (deep nesting used to
// overflow the stack), or a manifest that does not survive its own text: manifest_text() of
// what was read must read back to the same mesh, type and files.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>

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
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 1 << 16) return 0;  // the reader's own limit is tested by the selftest
  const std::string text(reinterpret_cast<const char*>(data), size);
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
