// The communication module: the only code that talks to MPI. It wraps communicators in RAII
// types with typed collectives over spans (element counts, never bytes), turns MPI errors into
// the project's fatal path, and counts the bytes each axis of the process grid sends and the
// time spent waiting in communication. Everything here that is a collective says so.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mptrain {

// Which part of the algorithm a communicator serves; traffic is counted per axis.
enum class Axis : int { world = 0, tp = 1, dp = 2, pp = 3, embed = 4 };
constexpr int n_axes = 5;
const char* axis_name(Axis axis);

struct CommCounters {
  std::array<uint64_t, n_axes> bytes_sent{};    // payload this rank contributed
  std::array<double, n_axes> wait_seconds{};    // wall time inside blocking calls and waits
  void reset() { *this = CommCounters{}; }
};

// Starts MPI (MPI_Init_thread with FUNNELED) and shuts it down; one per program, in main.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// A pending non-blocking operation. wait() is idempotent; the destructor waits. A request may
// own the buffer its operation reads (Comm::isend of a shared buffer): it keeps it alive until
// the operation has completed and lets go of it in the first wait().
class Request {
 public:
  Request();
  Request(Request&&) noexcept;
  Request& operator=(Request&&) noexcept;
  ~Request();
  void wait();
  bool active() const;

 private:
  friend class Comm;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Comm {
 public:
  // MPI_COMM_WORLD / MPI_COMM_SELF (not owned). Counters are fresh for each returned object.
  static Comm world();
  static Comm self();

  Comm();  // null communicator
  Comm(Comm&&) noexcept;
  Comm& operator=(Comm&&) noexcept;
  ~Comm();  // frees communicators this object created

  int rank() const;
  int size() const;
  bool null() const;
  Axis axis() const;
  // The counters this communicator adds to (shared by all communicators made from the same
  // grid, so the grid can report them).
  CommCounters& counters() const;
  void share_counters(std::shared_ptr<CommCounters> counters);

  // Collective over this communicator: MPI_Comm_split.
  Comm split(int color, int key, Axis axis) const;
  // Collective: MPI_Cart_create over dims (row-major, last dim fastest) followed by MPI_Cart_sub
  // keeping the dimensions flagged in keep[]. Returns the sub-communicator.
  Comm cart_sub(std::span<const int> dims, std::span<const int> keep, Axis axis) const;

  // Collective: MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the ranks sharing this node.
  Comm split_node() const;

  // Collective: MPI_Barrier.
  void barrier() const;
  // Collective: in-place MPI_Allreduce with MPI_SUM.
  void allreduce_sum(std::span<float> data) const;
  void allreduce_sum(std::span<double> data) const;
  void allreduce_sum(std::span<int64_t> data) const;
  // Collective: in-place MPI_Allreduce with MPI_MAX / MPI_MIN.
  void allreduce_max(std::span<float> data) const;
  void allreduce_max(std::span<int> data) const;
  void allreduce_min(std::span<int> data) const;
  // Collective, non-blocking: in-place MPI_Iallreduce with MPI_SUM. data must stay alive
  // until the request completes.
  Request iallreduce_sum(std::span<float> data) const;
  // Collective: MPI_Reduce_scatter_block with MPI_SUM; in.size() == out.size() * size().
  void reduce_scatter_sum(std::span<const float> in, std::span<float> out) const;
  // Collective, non-blocking: in-place MPI_Ireduce_scatter with MPI_SUM. `data` holds the
  // sum(counts) elements to reduce; rank r gets the sum of block r (counts[r] elements, blocks
  // in rank order) at the start of its own `data`. `data` and `counts` must stay alive until
  // the request completes. Counts the whole input as this rank's payload.
  Request ireduce_scatter_sum(std::span<float> data, std::span<const int> counts) const;
  // Collective: MPI_Allgather; out.size() == in.size() * size().
  void allgather(std::span<const float> in, std::span<float> out) const;
  // Collective: in-place MPI_Allgather; rank r's block is data[r·n, (r+1)·n), n = size / size().
  // Counts the rank's own block as its payload.
  void allgather_in_place(std::span<float> data) const;
  // Collective: MPI_Bcast from root.
  void bcast(std::span<char> data, int root) const;
  void bcast(std::span<int64_t> data, int root) const;
  std::string bcast_string(const std::string& s, int root) const;  // collective
  // Collective: every rank's string, indexed by rank (MPI_Allgather of sizes + MPI_Allgatherv).
  std::vector<std::string> allgather_strings(const std::string& s) const;
  // Collective: the one primitive for "every rank fails together". `local_error` is this
  // rank's failure ("" when it did not fail). Returns, on every rank, "" when no rank failed,
  // else the message of the lowest failing rank, so that a failure seen by some ranks only
  // becomes everyone's, reported once and the same everywhere, and no rank is left waiting in a
  // collective its peers abandoned. An all-reduce of one int (MPI_MIN) when nothing failed,
  // then a broadcast of the message when something did. See also agree_or_throw, agree_on.
  std::string agree(const std::string& local_error) const;
  // Point to point (not collective). isend's buffer must stay alive until the request completes.
  Request isend(std::span<const float> data, int dest, int tag) const;
  // The same, sending all of *buffer, which the returned request holds until the send has
  // completed: the caller may drop its own reference at once (a staging copy), and can tell
  // the buffer is free again when it is the only holder left (use_count() == 1).
  Request isend(std::shared_ptr<const std::vector<float>> buffer, int dest, int tag) const;
  void recv(std::span<float> data, int source, int tag) const;

  // Not collective: MPI_Abort of every rank in the job.
  [[noreturn]] static void abort_all(int code);
  // Not collective: seconds since an arbitrary origin (MPI_Wtime).
  static double wtime();

  // Not collective: the MPI_Comm itself, behind an opaque pointer, for a library that takes
  // one (HDF5's MPI-IO driver: h5::mpio_file_access in io/h5util.cpp). Only to be handed on:
  // calls made with it bypass this module's counters and error handling.
  const void* native_handle() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  explicit Comm(std::shared_ptr<Impl> impl);
  friend class Request;
};

// Collective over comm: Comm::agree; when any rank failed, every rank throws Error(message)
// with the lowest failing rank's message.
template <class Error>
void agree_or_throw(const Comm& comm, const std::string& local_error) {
  std::string message = comm.agree(local_error);
  if (!message.empty()) throw Error(message);
}

// Collective over comm: runs step() on this rank and agrees on how it went. When step() threw
// an Error on any rank, every rank throws Error with the lowest failing rank's message.
// Exceptions of other types pass through without agreement (they are bugs: the fatal path).
template <class Error, class Step>
void agree_on(const Comm& comm, Step&& step) {
  std::string error;
  try {
    step();
  } catch (const Error& e) {
    error = *e.what() ? e.what() : "unspecified error";
  }
  agree_or_throw<Error>(comm, error);
}

}  // namespace mptrain
