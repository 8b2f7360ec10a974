// Internal to the CPU backend: the pieces shared between cpu_backend.cpp (the Backend object and
// most ops) and cpu_attention.cpp (causal self-attention), which live in two files only to keep
// each one readable. Nothing here is part of the public interface.
#pragma once

namespace mptrain::cpu {

// Row-major C(m,n) = alpha * op(A)(m,k) * op(B)(k,n) + beta * C through cblas_sgemm, after
// checking the shapes and leading dimensions (OpenBLAS would only print a warning and carry on
// with garbage, so a bad call is turned into a fatal error that names it here).
// Threading: whatever OpenBLAS decides for the calling context. Its OpenMP build runs the call
// on the shared OpenMP pool with openblas_set_num_threads() threads from a serial region, and
// single-threaded from inside an active OpenMP parallel region.
void sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

// True when sgemm() may be called concurrently from the threads of an OpenMP parallel region
// and then runs single-threaded in each (OpenBLAS's OpenMP or sequential builds). A pthreads
// build of OpenBLAS would start its own threads from every caller and oversubscribe the cores.
bool blas_nests_in_openmp();

// Causal multi-head self-attention; the contracts are those of Backend::attention_forward and
// Backend::attention_backward. `threads` is the backend's OpenMP thread count; `nested` is
// blas_nests_in_openmp() (decides the threading model, see cpu_attention.cpp).
void attention_forward(float* out, float* att, const float* qkv, int B, int T, int NH, int HS,
                       int threads, bool nested);
void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv,
                        const float* att, int B, int T, int NH, int HS, int threads, bool nested);

}  // namespace mptrain::cpu
