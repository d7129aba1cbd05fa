// Fault injection (fault.hpp): RESHARD_FAULT, read once.
#include "fault.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "reshard/error.hpp"

namespace reshard::exec {

namespace {

struct State {
  std::once_flag read;
  Fault fault;
  int hits = 0;  // times the configured device reached the configured step
};

State& state() {
  static State s;
  return s;
}

int parse_int(std::string_view spec, std::string_view value, std::size_t at, int min) {
  int v = 0;
  bool ok = !value.empty() && value.size() < 9;
  for (char c : value) ok = ok && c >= '0' && c <= '9', v = v * 10 + (c - '0');
  if (!ok || v < min)
    throw ParseError(fmt::format("RESHARD_FAULT: expected a number >= {}, got '{}'", min, value), std::string(spec), at);
  return v;
}

Fault::Kind parse_kind(std::string_view spec, std::string_view v, std::size_t at) {
  if (v == "throw") return Fault::Kind::throw_error;
  if (v == "exit") return Fault::Kind::exit;
  if (v == "abort") return Fault::Kind::abort;
  if (v == "kill") return Fault::Kind::kill;
  if (v == "hang") return Fault::Kind::hang;
  throw ParseError(fmt::format("RESHARD_FAULT: unknown kind '{}' (throw, exit, abort, kill or hang)", v),
                   std::string(spec), at);
}

// One line on stderr before the process ends or stops, so that the tests see the fault fire.
void announce(int device, int step, const char* what) {
  std::fprintf(stderr, "reshard: device %d: injected fault (RESHARD_FAULT): %s before step %d\n", device, what, step);
  std::fflush(stderr);
}

}  // namespace

Fault parse_fault(std::string_view spec) {
  Fault f;
  if (spec.empty()) return f;
  bool has_kind = false;
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    std::size_t end = std::min(spec.find(',', pos), spec.size());
    std::string_view item = spec.substr(pos, end - pos);
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos)
      throw ParseError(fmt::format("RESHARD_FAULT: expected key=value, got '{}'", item), std::string(spec), pos);
    std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    std::size_t at = pos + eq + 1;
    if (key == "rank") f.rank = value == "all" ? -1 : parse_int(spec, value, at, 0);
    else if (key == "step") f.step = parse_int(spec, value, at, 1);
    else if (key == "call") f.call = parse_int(spec, value, at, 1);
    else if (key == "kind") f.kind = parse_kind(spec, value, at), has_kind = true;
    else
      throw ParseError(fmt::format("RESHARD_FAULT: unknown key '{}' (rank, step, kind, call)", key),
                       std::string(spec), pos);
    pos = end + 1;
  }
  if (!has_kind) throw ParseError("RESHARD_FAULT: kind= is missing", std::string(spec), spec.size());
  return f;
}

void set_fault(std::string_view spec) {
  State& s = state();
  std::call_once(s.read, [] {});  // RESHARD_FAULT is not read after this
  s.fault = parse_fault(spec);
  s.hits = 0;
}

void fault_point(int device, int step) {
  State& s = state();
  std::call_once(s.read, [&s] {
    if (const char* env = std::getenv("RESHARD_FAULT")) s.fault = parse_fault(env);
  });
  const Fault& f = s.fault;
  if (f.kind == Fault::Kind::none || step != f.step || (f.rank >= 0 && f.rank != device)) return;
  if (++s.hits != f.call) return;
  switch (f.kind) {
    case Fault::Kind::throw_error:
      throw Error(fmt::format("injected fault (RESHARD_FAULT): device {} throws before step {}", device, step));
    case Fault::Kind::exit:
      announce(device, step, "exits with status 7");
      std::_Exit(7);
    case Fault::Kind::abort:
      announce(device, step, "aborts (SIGABRT)");
      std::abort();
    case Fault::Kind::kill:
      announce(device, step, "kills itself (SIGKILL)");
      std::raise(SIGKILL);
      break;
    case Fault::Kind::hang:
      announce(device, step, "hangs");
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    case Fault::Kind::none:
      break;
  }
}

}  // namespace reshard::exec
