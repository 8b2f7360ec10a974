// The CUDA backend: every op of the Backend interface on one GPU, with cuBLAS for the matrix
// products and the kernels of cuda_kernels.cu / cuda_attention.cu for everything else.
//
// Execution model: one non-blocking stream per backend object; every kernel, copy and cuBLAS
// call (the handle is bound to that stream) is queued on it in program order, so ops see each
// other's results without extra synchronisation. to_host(), to_device(), sum() and
// sum_squares() wait for the stream (the host buffer is read or written when they return);
// synchronize() waits explicitly (before MPI touches device data it has staged).
// Memory: cudaMalloc, zero-filled on the stream; not host-accessible, so the model's collectives
// stage through the host. Precision: fp32 by default; TF32 tensor cores for fp32 products when
// asked ([device] tf32); bf16 GEMM operands with fp32 accumulation when asked (CudaOptions::bf16).
// Every CUDA and cuBLAS call is checked; a failure is fatal() with file:line and the error.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "cuda_common.cuh"
#include "mptrain/backend/backend.hpp"
#include "mptrain/core/error.hpp"

namespace mptrain {
namespace cuda {

// ---------------------------------------------------------------- error reporting

void cuda_failure(const char* file, int line, const char* call, cudaError_t err) {
  std::string hint;
  switch (err) {
    case cudaErrorMemoryAllocation:
      hint = "the GPU is out of memory: use a smaller [parallel] micro_batch, more tensor or "
             "pipeline parallelism, or more GPUs";
      break;
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInvalidKernelImage:
      hint = "this build has no code for this GPU: reconfigure with --with-cuda-arch=<its "
             "compute capability> and rebuild";
      break;
    case cudaErrorInsufficientDriver:
      hint = "the NVIDIA driver is older than the CUDA toolkit mptrain was built with";
      break;
    default:
      hint = "set MPTRAIN_CUDA_SYNC=1 to report asynchronous kernel errors where they happen";
  }
  fatal(file, line,
        std::string("CUDA: ") + call + " failed: " + cudaGetErrorName(err) + ": " +
            cudaGetErrorString(err),
        hint);
}

void cublas_failure(const char* file, int line, const char* call, cublasStatus_t status) {
  fatal(file, line,
        std::string("cuBLAS: ") + call + " failed: " + cublasGetStatusName(status) + ": " +
            cublasGetStatusString(status),
        status == CUBLAS_STATUS_ALLOC_FAILED ? "the GPU is out of memory" : "");
}

namespace {
bool sync_after_launch() {
#ifdef MPTRAIN_DEBUG
  return true;
#else
  const char* v = std::getenv("MPTRAIN_CUDA_SYNC");
  return v && *v && std::strcmp(v, "0") != 0;
#endif
}
}  // namespace

void check_launch(const char* file, int line, cudaStream_t stream) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) cuda_failure(file, line, "kernel launch", err);
  static const bool sync = sync_after_launch();
  if (sync) {
    const cudaError_t run = cudaStreamSynchronize(stream);
    if (run != cudaSuccess) cuda_failure(file, line, "kernel execution (MPTRAIN_CUDA_SYNC)", run);
  }
}

// ---------------------------------------------------------------- workspace

Workspace::~Workspace() {
  // Best effort: a destructor must not abort.
  if (data_) {
    cudaStreamSynchronize(stream_);
    cudaFree(data_);
  }
}

void* Workspace::get(size_t bytes) {
  if (bytes <= bytes_ && data_) return data_;
  const size_t mib = size_t{1} << 20;
  const size_t want = std::max(bytes, size_t{1}) + mib - 1;
  const size_t rounded = want / mib * mib;
  if (data_) {
    MPT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // queued work may still use the old block
    MPT_CUDA_CHECK(cudaFree(data_));
    data_ = nullptr;
    bytes_ = 0;
  }
  MPT_CUDA_CHECK(cudaMalloc(&data_, rounded));
  bytes_ = rounded;
  return data_;
}

// ---------------------------------------------------------------- the backend

namespace {

// Elements a row-major (rows, cols) matrix with leading dimension ld spans in memory.
size_t footprint(int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return static_cast<size_t>(rows - 1) * ld + cols;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& options)
      : device_(options.device), tf32_(options.tf32), bf16_(options.bf16) {
    const int devices = cuda_device_count();
    if (devices <= 0)
      throw InputError("[device] backend = cuda, but no CUDA device is visible to this rank");
    if (device_ < 0 || device_ >= devices)
      throw InputError("CUDA device " + std::to_string(device_) + " does not exist (" +
                       std::to_string(devices) + " visible)");
    MPT_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop;
    MPT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    // The default build also targets sm_75 (Turing), where cuBLAS has no bf16 products and
    // TF32 does not exist (cuBLAS quietly computes fp32): refuse rather than mislabel.
    if ((bf16_ || tf32_) && prop.major < 8)
      throw InputError(std::string("[device] precision = ") + (bf16_ ? "bf16" : "tf32") +
                       " needs a GPU of compute capability 8.0 or newer; " + prop.name + " is " +
                       std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                       " (use precision = fp32)");
    name_ = std::string("cuda (") + prop.name;
    if (bf16_) name_ += ", bf16 gemm";
    if (tf32_) name_ += ", tf32";
    name_ += ")";
    MPT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MPT_CUBLAS_CHECK(cublasCreate(&handle_));
    MPT_CUBLAS_CHECK(cublasSetStream(handle_, stream_));
    // CUBLAS_DEFAULT_MATH is plain fp32 for Sgemm; TF32 tensor cores only when asked for.
    MPT_CUBLAS_CHECK(
        cublasSetMathMode(handle_, tf32_ ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    workspace_ = std::make_unique<Workspace>(stream_);
    MPT_CUDA_CHECK(cudaMalloc(&result_, sizeof(double)));
  }

  ~CudaBackend() override {
    // Best effort, no aborts from a destructor.
    if (stream_) cudaStreamSynchronize(stream_);
    workspace_.reset();
    if (result_) cudaFree(result_);
    if (handle_) cublasDestroy(handle_);
    if (stream_) cudaStreamDestroy(stream_);
  }

  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override { return name_; }
  int threads() const override { return 1; }

  // ---- memory ----
  float* alloc(size_t n) override { return static_cast<float*>(zeroed(n, sizeof(float))); }
  void release(float* p) override { free_device(p); }
  int32_t* alloc_int(size_t n) override {
    return static_cast<int32_t*>(zeroed(n, sizeof(int32_t)));
  }
  void release_int(int32_t* p) override { free_device(p); }

  void to_host(float* host, const float* dev, size_t n) override {
    if (n == 0) return;
    MPT_CUDA_CHECK(cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    MPT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void to_device(float* dev, const float* host, size_t n) override {
    if (n == 0) return;
    MPT_CUDA_CHECK(cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    MPT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // the caller may reuse `host` at once
  }
  void to_device_int(int32_t* dev, const int32_t* host, size_t n) override {
    if (n == 0) return;
    MPT_CUDA_CHECK(
        cudaMemcpyAsync(dev, host, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream_));
    MPT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy(float* dst, const float* src, size_t n) override {
    if (n == 0 || dst == src) return;
    MPT_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_));
  }
  void fill(float* x, float value, size_t n) override { cuda::fill(stream_, x, value, n); }
  void synchronize() override { MPT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
  bool host_accessible() const override { return false; }

  // ---- dense linear algebra ----
  // Row-major C = alpha op(A) op(B) + beta C is column-major C^T = alpha op(B)^T op(A)^T +
  // beta C^T: the same buffers, with the operands swapped and m, n exchanged.
  void gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
            const float* b, int ldb, float beta, float* c, int ldc) override {
    if (!check_gemm_call(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)) return;
    if (k == 0) {  // an empty product: C = beta C
      cuda::scale_matrix(stream_, c, beta, m, n, ldc);
      return;
    }
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (!bf16_) {
      MPT_CUBLAS_CHECK(cublasSgemm(handle_, op_b, op_a, n, m, k, &alpha, b, ldb, a, lda, &beta, c,
                                   ldc));
      return;
    }
    // bf16: both operands rounded into workspace copies with the same layout.
    // A is stored (k, m) when transposed, else (m, k); B (n, k) or (k, n).
    const size_t a_elems = footprint(trans_a ? k : m, trans_a ? m : k, lda);
    const size_t b_elems = footprint(trans_b ? n : k, trans_b ? k : n, ldb);
    Carver measure;
    measure.take<__nv_bfloat16>(a_elems);
    measure.take<__nv_bfloat16>(b_elems);
    Carver carve(workspace_->get(measure.bytes()));
    __nv_bfloat16* a16 = carve.take<__nv_bfloat16>(a_elems);
    __nv_bfloat16* b16 = carve.take<__nv_bfloat16>(b_elems);
    cuda::to_bf16(stream_, a16, a, a_elems);
    cuda::to_bf16(stream_, b16, b, b_elems);
    MPT_CUBLAS_CHECK(cublasGemmEx(handle_, op_b, op_a, n, m, k, &alpha, b16, CUDA_R_16BF, ldb, a16,
                                  CUDA_R_16BF, lda, &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
  }

  void add_bias(float* out, const float* bias, int rows, int cols) override {
    cuda::add_bias(stream_, out, bias, rows, cols);
  }
  void bias_backward(float* dbias, const float* dout, int rows, int cols) override {
    cuda::bias_backward(stream_, *workspace_, dbias, dout, rows, cols);
  }

  // ---- element-wise ----
  void axpy(float* y, const float* x, float alpha, size_t n) override {
    cuda::axpy(stream_, y, x, alpha, n);
  }
  void add(float* out, const float* a, const float* b, size_t n) override {
    cuda::add(stream_, out, a, b, n);
  }
  void scale(float* x, float alpha, size_t n) override { cuda::scale(stream_, x, alpha, n); }
  void gelu_forward(float* out, const float* inp, size_t n) override {
    cuda::gelu_forward(stream_, out, inp, n);
  }
  void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) override {
    cuda::gelu_backward(stream_, dinp, inp, dout, n);
  }
  void bias_gelu_forward(float* pre, float* out, const float* bias, int rows, int cols) override {
    cuda::bias_gelu_forward(stream_, pre, out, bias, rows, cols);
  }
  // gelu_bias_backward: the default (gelu_backward, then bias_backward) is already two passes.

  // ---- LayerNorm ----
  void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                         const float* weight, const float* bias, int N, int C) override {
    cuda::layernorm_forward(stream_, out, mean, rstd, inp, weight, bias, N, C);
  }
  void residual_layernorm_forward(float* res, float* out, float* mean, float* rstd,
                                  const float* x, const float* bias_r, const float* weight,
                                  const float* bias, int N, int C) override {
    cuda::residual_layernorm_forward(stream_, res, out, mean, rstd, x, bias_r, weight, bias, N, C);
  }
  void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    cuda::layernorm_backward(stream_, *workspace_, dinp, dweight, dbias, dout, inp, weight, mean,
                             rstd, N, C);
  }

  // ---- attention ----
  void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH,
                         int HS) override {
    cuda::attention_forward(stream_, handle_, out, att, qkv, B, T, NH, HS);
  }
  void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                          const float* att, int B, int T, int NH, int HS) override {
    cuda::attention_backward(stream_, handle_, dqkv, datt, dout, qkv, att, B, T, NH, HS);
  }

  // ---- embeddings ----
  void embedding_forward(float* out, const int32_t* tokens, const float* wte, int vocab_start,
                         int V, int N, int C) override {
    cuda::embedding_forward(stream_, out, tokens, wte, vocab_start, V, N, C);
  }
  void embedding_backward(float* dwte, const float* dout, const int32_t* tokens, int vocab_start,
                          int V, int N, int C) override {
    cuda::embedding_backward(stream_, *workspace_, dwte, dout, tokens, vocab_start, V, N, C);
  }
  void position_forward(float* out, const float* wpe, int B, int T, int C) override {
    cuda::position_forward(stream_, out, wpe, B, T, C);
  }
  void position_backward(float* dwpe, const float* dout, int B, int T, int C) override {
    cuda::position_backward(stream_, dwpe, dout, B, T, C);
  }

  // ---- vocab-parallel cross-entropy ----
  void ce_row_max(float* row_max, const float* logits, int N, int V, int ld) override {
    cuda::ce_row_max(stream_, row_max, logits, N, V, ld);
  }
  void ce_row_sumexp(float* row_sum, const float* logits, const float* row_max, int N, int V,
                     int ld) override {
    cuda::ce_row_sumexp(stream_, row_sum, logits, row_max, N, V, ld);
  }
  void ce_target_logit(float* target_logit, const float* logits, const int32_t* targets,
                       int vocab_start, int N, int V, int ld) override {
    cuda::ce_target_logit(stream_, target_logit, logits, targets, vocab_start, N, V, ld);
  }
  void ce_losses(float* losses, const float* row_max, const float* row_sum,
                 const float* target_logit, int N) override {
    cuda::ce_losses(stream_, losses, row_max, row_sum, target_logit, N);
  }
  void ce_backward(float* dlogits, const float* logits, const float* row_max, const float* row_sum,
                   const int32_t* targets, int vocab_start, int N, int V, int ld,
                   float scale) override {
    cuda::ce_backward(stream_, dlogits, logits, row_max, row_sum, targets, vocab_start, N, V, ld,
                      scale);
  }

  // ---- optimizer and reductions ----
  void adamw(float* param, const float* grad, float* m, float* v, size_t n, float lr, float beta1,
             float beta2, float eps, float weight_decay, long t) override {
    const auto [bc1, bc2] = bias_corrections(beta1, beta2, t);
    cuda::adamw(stream_, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
  }
  void adamw_step(float* param, float* grad, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, long t, float grad_scale,
                  bool zero_grad) override {
    const auto [bc1, bc2] = bias_corrections(beta1, beta2, t);
    cuda::adamw_step(stream_, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2,
                     grad_scale, zero_grad);
  }
  double sum_squares(const float* x, size_t n) override { return reduce(x, n, true); }
  double sum(const float* x, size_t n) override { return reduce(x, n, false); }

 private:
  // 1 - beta^t in double, then float, exactly as the CPU backend.
  static std::pair<float, float> bias_corrections(float beta1, float beta2, long t) {
    MPT_CHECK(t >= 1, "adamw: step t is 1-based, got " + std::to_string(t));
    return {static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), t)),
            static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), t))};
  }

  void* zeroed(size_t n, size_t elem) {
    const size_t count = std::max<size_t>(n, 1);  // zero elements still get a valid pointer
    if (count > std::numeric_limits<size_t>::max() / elem)
      MPT_FATAL("CUDA backend: allocation of " + std::to_string(n) + " elements overflows");
    const size_t bytes = count * elem;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear it; the report below says what happened
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      fatal(__FILE__, __LINE__,
            "CUDA backend: cannot allocate " + std::to_string(bytes) + " bytes on device " +
                std::to_string(device_) + " (" + std::to_string(free_bytes >> 20) + " of " +
                std::to_string(total_bytes >> 20) + " MiB free): " + cudaGetErrorString(err),
            "use a smaller [parallel] micro_batch, more tensor or pipeline parallelism, or "
            "more GPUs");
    }
    MPT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_));
    return p;
  }

  void free_device(void* p) {
    if (!p) return;
    MPT_CUDA_CHECK(cudaStreamSynchronize(stream_));  // nothing queued may still use it
    MPT_CUDA_CHECK(cudaFree(p));
  }

  double reduce(const float* x, size_t n, bool squares) {
    if (n == 0) return 0.0;
    cuda::reduce_sum(stream_, *workspace_, result_, x, n, squares);
    double host = 0.0;
    MPT_CUDA_CHECK(
        cudaMemcpyAsync(&host, result_, sizeof(double), cudaMemcpyDeviceToHost, stream_));
    MPT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return host;
  }

  const int device_;
  const bool tf32_, bf16_;
  std::string name_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
  std::unique_ptr<Workspace> workspace_;
  double* result_ = nullptr;  // device scalar: the result of sum() / sum_squares()
};

}  // namespace
}  // namespace cuda

// ---------------------------------------------------------------- public entry points

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& options) {
  return std::make_unique<cuda::CudaBackend>(options);
}

std::unique_ptr<Backend> make_cuda_backend(int device) {
  CudaOptions options;
  options.device = device;
  return make_cuda_backend(options);
}

int cuda_device_count() {
  // CPU-only machines call this (backend = auto): no driver, no device or a driver too old all
  // mean "no CUDA here", never an error.
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // leave no error behind for later calls to report
    return 0;
  }
  return std::max(0, count);
}

bool cuda_available() { return cuda_device_count() > 0; }

double cuda_measure_sgemm_tflops(int device, int m, int n, int k, bool tf32, bool bf16) {
  if (m <= 0 || n <= 0 || k <= 0) return 0.0;
  if (device < 0 || device >= cuda_device_count()) return 0.0;
  int previous = 0;
  MPT_CUDA_CHECK(cudaGetDevice(&previous));
  MPT_CUDA_CHECK(cudaSetDevice(device));
  cudaStream_t stream = nullptr;
  cublasHandle_t handle = nullptr;
  MPT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  MPT_CUBLAS_CHECK(cublasCreate(&handle));
  MPT_CUBLAS_CHECK(cublasSetStream(handle, stream));
  MPT_CUBLAS_CHECK(
      cublasSetMathMode(handle, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  const size_t a_n = size_t(m) * k, b_n = size_t(k) * n, c_n = size_t(m) * n;
  const size_t elem = bf16 ? sizeof(__nv_bfloat16) : sizeof(float);
  void *a = nullptr, *b = nullptr;
  float* c = nullptr;
  MPT_CUDA_CHECK(cudaMalloc(&a, a_n * elem));
  MPT_CUDA_CHECK(cudaMalloc(&b, b_n * elem));
  MPT_CUDA_CHECK(cudaMalloc(&c, c_n * sizeof(float)));
  if (bf16) {
    cuda::fill_pseudo_random_bf16(stream, static_cast<__nv_bfloat16*>(a), a_n, 1);
    cuda::fill_pseudo_random_bf16(stream, static_cast<__nv_bfloat16*>(b), b_n, 2);
  } else {
    cuda::fill_pseudo_random(stream, static_cast<float*>(a), a_n, 1);
    cuda::fill_pseudo_random(stream, static_cast<float*>(b), b_n, 2);
  }
  cuda::fill(stream, c, 0.0f, c_n);
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major C(m,n) = A(m,k) B(k,n): the layout does not change the rate.
  auto product = [&] {
    if (bf16)
      MPT_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, a,
                                    CUDA_R_16BF, m, b, CUDA_R_16BF, k, &beta, c, CUDA_R_32F, m,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
      MPT_CUBLAS_CHECK(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha,
                                   static_cast<const float*>(a), m, static_cast<const float*>(b),
                                   k, &beta, c, m));
  };
  cudaEvent_t start = nullptr, stop = nullptr;
  MPT_CUDA_CHECK(cudaEventCreate(&start));
  MPT_CUDA_CHECK(cudaEventCreate(&stop));
  auto time_ms = [&](int reps) {
    MPT_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < reps; i++) product();
    MPT_CUDA_CHECK(cudaEventRecord(stop, stream));
    MPT_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    MPT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    return static_cast<double>(ms);
  };
  time_ms(3);  // warm-up: cuBLAS heuristics, clocks
  const double once = std::max(time_ms(1), 1e-3);
  const int reps = static_cast<int>(std::clamp(300.0 / once, 3.0, 2000.0));  // ~0.3 s
  const double ms = std::max(time_ms(reps), 1e-6);
  const double tflops = 2.0 * double(m) * double(n) * double(k) * reps / (ms * 1e-3) / 1e12;
  MPT_CUDA_CHECK(cudaEventDestroy(start));
  MPT_CUDA_CHECK(cudaEventDestroy(stop));
  MPT_CUDA_CHECK(cudaFree(a));
  MPT_CUDA_CHECK(cudaFree(b));
  MPT_CUDA_CHECK(cudaFree(c));
  MPT_CUBLAS_CHECK(cublasDestroy(handle));
  MPT_CUDA_CHECK(cudaStreamDestroy(stream));
  MPT_CUDA_CHECK(cudaSetDevice(previous));
  return tflops;
}

}  // namespace mptrain
