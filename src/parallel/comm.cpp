// The communication module: the only file that includes <mpi.h>. Communicators are RAII
// objects; every MPI call goes through MPI_CHECK, which turns an error code into the project's
// fatal path with MPI's own error string (communicators use MPI_ERRORS_RETURN, so a failure is
// never a silent MPI_ERRORS_ARE_FATAL crash without context). Bytes are counted per axis as
// the payload this rank hands to each call (element count times element size).
#include "mptrain/parallel/comm.hpp"

#include <mpi.h>

#include <cstdlib>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "mptrain/core/error.hpp"

namespace mptrain {

namespace {

void check_mpi(int rc, const char* call, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fatal(file, line, std::string(call) + " failed: " + std::string(text, len),
        "an MPI rank may have died, or the network failed; check the other ranks' output");
}
#define MPI_CHECK(call) check_mpi((call), #call, __FILE__, __LINE__)

template <class T> MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }
template <> MPI_Datatype mpi_type<int>() { return MPI_INT; }
template <> MPI_Datatype mpi_type<int64_t>() { return MPI_INT64_T; }

// MPI counts are int; refuse silently truncated counts.
int as_count(size_t n) {
  MPT_CHECK(n <= static_cast<size_t>(std::numeric_limits<int>::max()),
            "message of " + std::to_string(n) + " elements exceeds MPI's int count");
  return static_cast<int>(n);
}

}  // namespace

const char* axis_name(Axis axis) {
  switch (axis) {
    case Axis::world: return "world";
    case Axis::tp: return "tp";
    case Axis::dp: return "dp";
    case Axis::pp: return "pp";
    case Axis::embed: return "embed";
  }
  return "?";
}

// ------------------------------------------------------------------ session

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  set_error_rank(rank);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// ------------------------------------------------------------------ comm

struct Comm::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  bool owned = false;
  Axis axis = Axis::world;
  std::shared_ptr<CommCounters> counters = std::make_shared<CommCounters>();

  ~Impl() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned && comm != MPI_COMM_NULL && !finalized) MPI_Comm_free(&comm);
  }
  void count(size_t bytes) { counters->bytes_sent[static_cast<int>(axis)] += bytes; }
  void waited(double seconds) { counters->wait_seconds[static_cast<int>(axis)] += seconds; }
};

struct Request::Impl {
  MPI_Request request = MPI_REQUEST_NULL;
  std::shared_ptr<Comm::Impl> comm;  // keeps the communicator and its counters alive
  std::shared_ptr<const void> buffer;  // the data an owning isend reads, until it completed
};

Request::Request() = default;
Request::Request(Request&&) noexcept = default;
Request& Request::operator=(Request&& o) noexcept {
  if (this != &o) {
    wait();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
Request::~Request() { wait(); }
bool Request::active() const { return impl_ && impl_->request != MPI_REQUEST_NULL; }

void Request::wait() {
  if (!active()) return;
  double t0 = MPI_Wtime();
  MPI_CHECK(MPI_Wait(&impl_->request, MPI_STATUS_IGNORE));
  impl_->comm->waited(MPI_Wtime() - t0);
  impl_->buffer.reset();  // MPI is done reading it
}

Comm::Comm() = default;
Comm::Comm(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Comm::Comm(Comm&&) noexcept = default;
Comm& Comm::operator=(Comm&&) noexcept = default;
Comm::~Comm() = default;

Comm Comm::world() {
  auto impl = std::make_shared<Impl>();
  impl->comm = MPI_COMM_WORLD;
  return Comm(impl);
}

Comm Comm::self() {
  auto impl = std::make_shared<Impl>();
  impl->comm = MPI_COMM_SELF;
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN));
  return Comm(impl);
}

bool Comm::null() const { return !impl_ || impl_->comm == MPI_COMM_NULL; }

int Comm::rank() const {
  MPT_CHECK(!null(), "rank() of a null communicator");
  int r = 0;
  MPI_CHECK(MPI_Comm_rank(impl_->comm, &r));
  return r;
}

int Comm::size() const {
  MPT_CHECK(!null(), "size() of a null communicator");
  int s = 0;
  MPI_CHECK(MPI_Comm_size(impl_->comm, &s));
  return s;
}

Axis Comm::axis() const { return impl_ ? impl_->axis : Axis::world; }
CommCounters& Comm::counters() const { return *impl_->counters; }
void Comm::share_counters(std::shared_ptr<CommCounters> counters) {
  if (impl_) impl_->counters = std::move(counters);
}

Comm Comm::split(int color, int key, Axis axis) const {
  auto impl = std::make_shared<Impl>();
  impl->axis = axis;
  impl->counters = impl_->counters;
  MPI_CHECK(MPI_Comm_split(impl_->comm, color < 0 ? MPI_UNDEFINED : color, key, &impl->comm));
  impl->owned = true;
  if (impl->comm != MPI_COMM_NULL)
    MPI_CHECK(MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN));
  return Comm(impl);
}

Comm Comm::cart_sub(std::span<const int> dims, std::span<const int> keep, Axis axis) const {
  MPT_CHECK(dims.size() == keep.size(), "cart_sub: dims and keep differ in length");
  std::vector<int> d(dims.begin(), dims.end()), periods(dims.size(), 0), k(keep.begin(), keep.end());
  MPI_Comm cart = MPI_COMM_NULL;
  // reorder = 0: keep world ranks, so the row-major Cartesian numbering is the design's.
  MPI_CHECK(MPI_Cart_create(impl_->comm, static_cast<int>(d.size()), d.data(), periods.data(), 0,
                            &cart));
  auto impl = std::make_shared<Impl>();
  impl->axis = axis;
  impl->counters = impl_->counters;
  MPI_CHECK(MPI_Cart_sub(cart, k.data(), &impl->comm));
  impl->owned = true;
  MPI_CHECK(MPI_Comm_free(&cart));
  MPI_CHECK(MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN));
  return Comm(impl);
}

Comm Comm::split_node() const {
  auto impl = std::make_shared<Impl>();
  impl->axis = impl_->axis;
  impl->counters = impl_->counters;
  MPI_CHECK(MPI_Comm_split_type(impl_->comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &impl->comm));
  impl->owned = true;
  MPI_CHECK(MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN));
  return Comm(impl);
}

void Comm::barrier() const {
  double t0 = MPI_Wtime();
  MPI_CHECK(MPI_Barrier(impl_->comm));
  impl_->waited(MPI_Wtime() - t0);
}

#define MPT_ALLREDUCE(T, OP, NAME)                                                        \
  void Comm::NAME(std::span<T> data) const {                                              \
    if (data.empty()) return;                                                             \
    double t0 = MPI_Wtime();                                                              \
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, data.data(), as_count(data.size()), mpi_type<T>(), \
                            OP, impl_->comm));                                            \
    impl_->waited(MPI_Wtime() - t0);                                                      \
    impl_->count(data.size_bytes());                                                      \
  }
MPT_ALLREDUCE(float, MPI_SUM, allreduce_sum)
MPT_ALLREDUCE(double, MPI_SUM, allreduce_sum)
MPT_ALLREDUCE(int64_t, MPI_SUM, allreduce_sum)
MPT_ALLREDUCE(float, MPI_MAX, allreduce_max)
MPT_ALLREDUCE(int, MPI_MAX, allreduce_max)
MPT_ALLREDUCE(int, MPI_MIN, allreduce_min)
#undef MPT_ALLREDUCE

Request Comm::iallreduce_sum(std::span<float> data) const {
  Request r;
  r.impl_ = std::make_unique<Request::Impl>();
  r.impl_->comm = impl_;
  if (data.empty()) return r;
  MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, data.data(), as_count(data.size()), MPI_FLOAT, MPI_SUM,
                           impl_->comm, &r.impl_->request));
  impl_->count(data.size_bytes());
  return r;
}

void Comm::reduce_scatter_sum(std::span<const float> in, std::span<float> out) const {
  MPT_CHECK(in.size() == out.size() * static_cast<size_t>(size()),
            "reduce_scatter_sum: input must be size() times the output");
  double t0 = MPI_Wtime();
  MPI_CHECK(MPI_Reduce_scatter_block(in.data(), out.data(), as_count(out.size()), MPI_FLOAT,
                                     MPI_SUM, impl_->comm));
  impl_->waited(MPI_Wtime() - t0);
  impl_->count(in.size_bytes());
}

Request Comm::ireduce_scatter_sum(std::span<float> data, std::span<const int> counts) const {
  MPT_CHECK(counts.size() == static_cast<size_t>(size()),
            "ireduce_scatter_sum: one count per rank");
  size_t total = 0;
  for (int c : counts) total += static_cast<size_t>(c);
  MPT_CHECK(total == data.size(), "ireduce_scatter_sum: the counts must add up to the input");
  Request r;
  r.impl_ = std::make_unique<Request::Impl>();
  r.impl_->comm = impl_;
  if (data.empty()) return r;
  MPI_CHECK(MPI_Ireduce_scatter(MPI_IN_PLACE, data.data(), counts.data(), MPI_FLOAT, MPI_SUM,
                                impl_->comm, &r.impl_->request));
  impl_->count(data.size_bytes());
  return r;
}

void Comm::allgather_in_place(std::span<float> data) const {
  const size_t n = data.size() / static_cast<size_t>(size());
  MPT_CHECK(n * static_cast<size_t>(size()) == data.size(),
            "allgather_in_place: the size must be a multiple of the ranks");
  double t0 = MPI_Wtime();
  MPI_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data.data(), as_count(n), MPI_FLOAT,
                          impl_->comm));
  impl_->waited(MPI_Wtime() - t0);
  impl_->count(n * sizeof(float));
}

void Comm::allgather(std::span<const float> in, std::span<float> out) const {
  MPT_CHECK(out.size() == in.size() * static_cast<size_t>(size()),
            "allgather: output must be size() times the input");
  double t0 = MPI_Wtime();
  MPI_CHECK(MPI_Allgather(in.data(), as_count(in.size()), MPI_FLOAT, out.data(),
                          as_count(in.size()), MPI_FLOAT, impl_->comm));
  impl_->waited(MPI_Wtime() - t0);
  impl_->count(in.size_bytes());
}

void Comm::bcast(std::span<char> data, int root) const {
  MPI_CHECK(MPI_Bcast(data.data(), as_count(data.size()), MPI_CHAR, root, impl_->comm));
  if (rank() == root) impl_->count(data.size_bytes());
}

void Comm::bcast(std::span<int64_t> data, int root) const {
  MPI_CHECK(MPI_Bcast(data.data(), as_count(data.size()), MPI_INT64_T, root, impl_->comm));
  if (rank() == root) impl_->count(data.size_bytes());
}

std::string Comm::bcast_string(const std::string& s, int root) const {
  int64_t n = static_cast<int64_t>(s.size());
  bcast(std::span<int64_t>(&n, 1), root);  // collective
  std::string out = rank() == root ? s : std::string(static_cast<size_t>(n), '\0');
  bcast(std::span<char>(out.data(), out.size()), root);  // collective
  return out;
}

std::string Comm::agree(const std::string& local_error) const {
  int first_failing = local_error.empty() ? size() : rank();
  allreduce_min(std::span<int>(&first_failing, 1));  // collective
  if (first_failing == size()) return {};
  return bcast_string(local_error, first_failing);  // collective
}

std::vector<std::string> Comm::allgather_strings(const std::string& s) const {
  const int n = size();
  int mine = as_count(s.size());
  std::vector<int> lengths(n), offsets(n);
  MPI_CHECK(MPI_Allgather(&mine, 1, MPI_INT, lengths.data(), 1, MPI_INT, impl_->comm));
  std::exclusive_scan(lengths.begin(), lengths.end(), offsets.begin(), 0);
  std::string all(static_cast<size_t>(offsets[n - 1] + lengths[n - 1]), '\0');
  MPI_CHECK(MPI_Allgatherv(s.data(), mine, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                           MPI_CHAR, impl_->comm));
  impl_->count(s.size());
  std::vector<std::string> out(n);
  for (int r = 0; r < n; ++r) out[r] = all.substr(offsets[r], lengths[r]);
  return out;
}

Request Comm::isend(std::span<const float> data, int dest, int tag) const {
  Request r;
  r.impl_ = std::make_unique<Request::Impl>();
  r.impl_->comm = impl_;
  MPI_CHECK(MPI_Isend(data.data(), as_count(data.size()), MPI_FLOAT, dest, tag, impl_->comm,
                      &r.impl_->request));
  impl_->count(data.size_bytes());
  return r;
}

Request Comm::isend(std::shared_ptr<const std::vector<float>> buffer, int dest, int tag) const {
  MPT_CHECK(buffer != nullptr, "isend: null buffer");
  Request r = isend(std::span<const float>(*buffer), dest, tag);
  r.impl_->buffer = std::move(buffer);
  return r;
}

void Comm::recv(std::span<float> data, int source, int tag) const {
  double t0 = MPI_Wtime();
  MPI_CHECK(MPI_Recv(data.data(), as_count(data.size()), MPI_FLOAT, source, tag, impl_->comm,
                     MPI_STATUS_IGNORE));
  impl_->waited(MPI_Wtime() - t0);
}

void Comm::abort_all(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

double Comm::wtime() { return MPI_Wtime(); }

const void* Comm::native_handle() const { return &impl_->comm; }

void abort_job(int code) { Comm::abort_all(code); }

}  // namespace mptrain
