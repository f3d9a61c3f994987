// The peers of bench_executors.cpp, with the same sizes; does not link spindle.
//  - to_thread_latency: std::async(std::launch::async, fn, i).get() kCalls times in a
//    row from a plain thread (a new thread per call); ns per call.
//  - to_thread_latency_asio: boost::asio::post(pool, packaged_task) then future.get(),
//    on a boost::asio::thread_pool of kPoolThreads threads; ns per call.
//  - to_thread_throughput[_asio]: the same from kCallers plain threads at once; calls
//    per second.
//  - process_call_empty / process_call_1mib: the floor of a process pool call: a raw
//    round trip over a socketpair to a forked child (request: u64 length + bytes;
//    reply: u64), with a 4-byte and a 1 MiB request; us per call. The child is forked
//    before this process starts any thread.
// Run each workload alone (scripts/bench.py does).
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cerrno>
#include <cstdint>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::Outcome;
using bench::seconds_since;

// The same sizes as bench_executors.cpp.
constexpr uint64_t kCalls = 50'000;
constexpr uint64_t kCallers = 16;
constexpr unsigned kPoolThreads = 4;
constexpr uint64_t kProcCalls = 10'000;
constexpr uint64_t kBigCalls = 1'000;
constexpr std::size_t kBig = std::size_t(1) << 20;

uint64_t plus_one(uint64_t i) { return i + 1; }
constexpr uint64_t want_sum(uint64_t n) { return n * (n + 1) / 2; }

// One call through each peer.
uint64_t call_async(uint64_t i) { return std::async(std::launch::async, plus_one, i).get(); }
uint64_t call_asio(boost::asio::thread_pool& pool, uint64_t i) {
  std::packaged_task<uint64_t()> job([i] { return plus_one(i); });
  std::future<uint64_t> f = job.get_future();
  boost::asio::post(pool, std::move(job));
  return f.get();
}

// --- latency: sequential round trips from one thread ----------------------------------------
template <class Call>
Outcome latency(Call call) {
  (void)call(0);  // warm-up (asio: the pool's threads exist already)
  uint64_t sum = 0;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < kCalls; ++i) sum += call(i);
  const double s = seconds_since(t0);
  return Outcome{s, bench::expect("sum", sum, want_sum(kCalls))};
}

// --- throughput: kCallers plain threads calling at once -------------------------------------
template <class Call>
Outcome throughput(Call call) {
  const uint64_t per = kCalls / kCallers;
  std::vector<uint64_t> sums(kCallers, 0);
  std::vector<std::thread> callers;
  callers.reserve(kCallers);
  const auto t0 = Clock::now();
  for (uint64_t c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      uint64_t sum = 0;
      for (uint64_t i = c * per; i < (c + 1) * per; ++i) sum += call(i);
      sums[c] = sum;
    });
  for (auto& t : callers) t.join();
  const double s = seconds_since(t0);
  uint64_t sum = 0;
  for (uint64_t v : sums) sum += v;
  return Outcome{s, bench::expect("sum", sum, want_sum(per * kCallers))};
}

// --- the process call floor: a forked child answering over a socketpair ---------------------
bool read_all(int fd, void* p, std::size_t n) {
  char* c = static_cast<char*>(p);
  while (n > 0) {
    const ssize_t r = ::read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= std::size_t(r);
  }
  return true;
}
bool write_all(int fd, const void* p, std::size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t r = ::write(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= std::size_t(r);
  }
  return true;
}

// The child: reads requests until EOF, answers each with its length plus its middle byte.
[[noreturn]] void serve_child(int fd) {
  std::vector<uint8_t> buf;
  for (;;) {
    uint64_t n;
    if (!read_all(fd, &n, sizeof n)) ::_exit(0);
    buf.resize(n);
    if (!read_all(fd, buf.data(), n)) ::_exit(1);
    const uint64_t reply = n + (n ? buf[n / 2] : 0);
    if (!write_all(fd, &reply, sizeof reply)) ::_exit(1);
  }
}

struct Child {
  pid_t pid = -1;
  int fd = -1;
  Child() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) throw std::runtime_error("socketpair failed");
    pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::close(sv[0]);
      serve_child(sv[1]);
    }
    ::close(sv[1]);
    fd = sv[0];
  }
  ~Child() {
    ::close(fd);  // the child sees EOF and exits
    int status;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  uint64_t call(const std::vector<uint8_t>& req) {
    const uint64_t n = req.size();
    uint64_t reply = 0;
    if (!write_all(fd, &n, sizeof n) || !write_all(fd, req.data(), n) || !read_all(fd, &reply, sizeof reply))
      throw std::runtime_error("the child went away");
    return reply;
  }
};

Outcome pipe_calls(Child& child, std::size_t bytes, uint64_t calls) {
  std::vector<uint8_t> req(bytes, 1);
  const uint64_t each = bytes + 1;
  (void)child.call(req);
  uint64_t sum = 0;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < calls; ++i) sum += child.call(req);
  const double s = seconds_since(t0);
  return Outcome{s, bench::expect("reply sum", sum, calls * each)};
}

// --- registration ------------------------------------------------------------------------------
void to_thread_latency(benchmark::State& st) {
  Outcome out;
  if (!bench::timed(st, out, [] { return latency(call_async); })) return;
  st.counters["ns_per_call"] = out.seconds * 1e9 / kCalls;
}
void to_thread_latency_asio(benchmark::State& st) {
  boost::asio::thread_pool pool(kPoolThreads);
  Outcome out;
  if (!bench::timed(st, out, [&] { return latency([&](uint64_t i) { return call_asio(pool, i); }); })) return;
  st.counters["ns_per_call"] = out.seconds * 1e9 / kCalls;
  pool.join();
}
void to_thread_throughput(benchmark::State& st) {
  Outcome out;
  if (!bench::timed(st, out, [] { return throughput(call_async); })) return;
  st.counters["calls_per_s"] = double(kCalls / kCallers * kCallers) / out.seconds;
}
void to_thread_throughput_asio(benchmark::State& st) {
  boost::asio::thread_pool pool(kPoolThreads);
  Outcome out;
  if (!bench::timed(st, out, [&] { return throughput([&](uint64_t i) { return call_asio(pool, i); }); })) return;
  st.counters["calls_per_s"] = double(kCalls / kCallers * kCallers) / out.seconds;
  pool.join();
}
void process_call_empty(benchmark::State& st) {
  Child child;
  Outcome out;
  if (!bench::timed(st, out, [&] { return pipe_calls(child, sizeof(int), kProcCalls); })) return;
  st.counters["us_per_call"] = out.seconds * 1e6 / kProcCalls;
}
void process_call_1mib(benchmark::State& st) {
  Child child;
  Outcome out;
  if (!bench::timed(st, out, [&] { return pipe_calls(child, kBig, kBigCalls); })) return;
  st.counters["us_per_call"] = out.seconds * 1e6 / kBigCalls;
}

#define WORKLOAD(fn) BENCHMARK(fn)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond)
WORKLOAD(to_thread_latency);
WORKLOAD(to_thread_latency_asio);
WORKLOAD(to_thread_throughput);
WORKLOAD(to_thread_throughput_asio);
WORKLOAD(process_call_empty);
WORKLOAD(process_call_1mib);

}  // namespace

BENCHMARK_MAIN();
