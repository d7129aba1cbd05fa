// libFuzzer target for the case-file parser (parse_cases, docs/design.md 6 and 10; issue 15).
// Input: a case file's text. Expected outcomes: the cases, or reshard::Error naming the line.
// Findings (abort): any other exception, a crash, or cases that do not survive being written
// back in the format (name | mesh | from | to [| to_mesh], a trailing "# tight") and read again.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "reshard/cases.hpp"
#include "reshard/error.hpp"

namespace {
[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz_cases: finding: %s\n", what.c_str());
  std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<reshard::Case> cases;
  try {
    cases = reshard::parse_cases(text);
  } catch (const reshard::Error&) {
    return 0;
  } catch (const std::exception& e) {
    finding(std::string("unexpected exception: ") + e.what());
  }
  std::string again;
  for (const reshard::Case& c : cases) {
    again += c.name + " | " + c.mesh + " | " + c.from + " | " + c.to;
    if (!c.to_mesh.empty()) again += " | " + c.to_mesh;
    again += c.tight ? " # tight\n" : "\n";
  }
  std::vector<reshard::Case> back;
  try {
    back = reshard::parse_cases(again);
  } catch (const std::exception& e) {
    finding(std::string("written back, the cases do not parse: ") + e.what() + "\n" + again);
  }
  if (back.size() != cases.size()) finding("written back, a different number of cases");
  for (std::size_t i = 0; i < back.size(); ++i)
    if (back[i].name != cases[i].name || back[i].mesh != cases[i].mesh || back[i].from != cases[i].from ||
        back[i].to != cases[i].to || back[i].to_mesh != cases[i].to_mesh || back[i].tight != cases[i].tight)
      finding("written back, case " + cases[i].name + " reads differently");
  return 0;
}
