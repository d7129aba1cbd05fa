// check_agreement (comm.hpp): every member runs the same thing with valid buffers, or every
// member throws. The common case is one all-reduce of three words; what went wrong is only
// gathered when something did.
#include <climits>

#include "reshard/comm.hpp"
#include "reshard/error.hpp"

namespace reshard {

std::uint64_t fnv1a(std::string_view text, std::uint64_t seed) {
  std::uint64_t h = seed;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

namespace {

// Every member's text, in group order (two all-gathers: lengths, then characters).
std::vector<std::string> gather_texts(Group& g, const std::string& mine) {
  int n = g.size();
  std::vector<Segment> one(n);
  for (int i = 0; i < n; ++i) one[i] = {i, 1};
  std::int64_t len = static_cast<std::int64_t>(mine.size());
  std::vector<std::int64_t> lens(n);
  g.allgatherv(&len, 1, lens.data(), one, DType::i64);
  std::vector<Segment> segs(n);
  std::int64_t total = 0;
  for (int i = 0; i < n; ++i) segs[i] = {total, lens[i]}, total += lens[i];
  std::string all(static_cast<std::size_t>(total), '\0');
  g.allgatherv(mine.data(), len, all.data(), segs, DType::u8);
  std::vector<std::string> r;
  for (const Segment& s : segs) r.push_back(all.substr(s.offset, s.count));
  return r;
}

// Members' reports: '0' or '1' (has an error), the fingerprint, then the summary or error.
std::string report(std::uint64_t fp, const std::string& summary, const std::string& error) {
  return fmt::format("{}{:016x}{}", error.empty() ? '0' : '1', fp, error.empty() ? summary : error);
}

[[noreturn]] void throw_disagreement(Group& g, std::string_view subject, std::uint64_t fp,
                                     const std::string& summary, const std::string& error) {
  std::vector<std::string> all = gather_texts(g, report(fp, summary, error));
  const int me = g.rank();
  if (!error.empty()) throw MismatchError(error);
  for (std::size_t r = 0; r < all.size(); ++r)
    if (all[r][0] == '1')
      throw MismatchError(fmt::format("rank {} cannot run it: {}", r, all[r].substr(17)));
  std::string mine = fmt::format("{:016x}", fp);
  for (std::size_t r = 0; r < all.size(); ++r)
    if (all[r].substr(1, 16) != mine)
      throw MismatchError(fmt::format("ranks disagree on {} (rank {} has {}; rank {} has {})", subject, me,
                                      summary, r, all[r].substr(17)));
  throw MismatchError(fmt::format("ranks disagree on {}", subject));  // unreachable: hashes differed
}

}  // namespace

void check_agreement(Group& group, std::string_view subject, std::uint64_t fingerprint,
                     const std::string& summary, const std::string& local_error) {
  // min(fp) and min(~fp) = ~max(fp): all members agree iff both equal their own value, and
  // then every member sees it (if one saw min = max = its own, all values are equal).
  const auto fp = static_cast<std::int64_t>(fingerprint);
  std::int64_t mine[3] = {fp, ~fp, local_error.empty() ? INT64_MAX : group.rank()};
  std::int64_t lo[3];
  group.allreduce(mine, lo, 3, DType::i64, ReduceOp::min);
  if (lo[0] == fp && lo[1] == ~fp && lo[2] == INT64_MAX) return;
  throw_disagreement(group, subject, fingerprint, summary, local_error);
}

}  // namespace reshard
