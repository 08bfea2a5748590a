"""The CUDA C++ source of the GPU kernels of :mod:`.cupy_backend` (compiled there with cupy's
RawModule), kept apart from the launch code. Pure text: importing it needs neither cupy nor a GPU, so
tests/test_cuda_source.py compiles it with nvcc and runs parts of it on the host.

Sections marked ``// BEGIN ... // END`` are host-compilable (their ``__device__`` functions run on the
CPU when declared ``__host__ __device__``): the drift's adjoint, the Philox normals and the per-block
step of a fused run.
"""

SOURCE = r"""
// eq. (9) and its families (spdekit/operators.py), kind = index in DIFFUSIVITIES; s = |x|^2, il = 1/lambda^2
template <typename T>
__device__ __forceinline__ T gfun(int kind, T a, T il, T s) {
    switch (kind) {
        case 0: return a / sqrt(T(1) + s * il);                       // charbonnier (the paper's g)
        case 1: return a / (T(1) + s * il);                           // perona-malik
        case 2: return a * exp(-(s * il));                            // exponential
        default: {                                                    // weickert: 1 at s = 0 (w = inf)
            const T z = s * il;
            const T w = T(3.31488) / (z * z * z * z);
            return a * -expm1(-w);
        }
    }
}

template <typename T>
struct Plane {
    const T* u; int H; int W;
    __device__ __forceinline__ T at(int y, int x) const { return u[y * W + x]; }
    // mirrored central differences: 0 on the border nodes of that axis
    __device__ __forceinline__ T dxm(int y, int x) const {
        return (x > 0 && x < W - 1) ? at(y, x + 1) - at(y, x - 1) : T(0);
    }
    __device__ __forceinline__ T dym(int y, int x) const {
        return (y > 0 && y < H - 1) ? at(y + 1, x) - at(y - 1, x) : T(0);
    }
    // clamped central differences: one-sided on the border nodes
    __device__ __forceinline__ T dxc(int y, int x) const {
        return at(y, min(x + 1, W - 1)) - at(y, max(x - 1, 0));
    }
    __device__ __forceinline__ T dyc(int y, int x) const {
        return at(min(y + 1, H - 1), x) - at(max(y - 1, 0), x);
    }
};

// eq. (35)-(36) with the mirror-ghost closure (numpy_backend), unscaled by h^-2
template <typename T>
__device__ T drift_paper(const Plane<T>& P, int y, int x, int kind, T a, T il) {
    const int H = P.H, W = P.W;
    const T c = P.at(y, x);
    T b = T(0), dx, dy;
    // x-neighbours: g1(dx clamped, dy mirrored); beyond a border the mirror ghost g1(0, dy mirrored)
    if (x > 0) { dx = P.dxc(y, x - 1); dy = P.dym(y, x - 1); b += gfun(kind, a, il, dx * dx + dy * dy) * (P.at(y, x - 1) - c); }
    else       { dy = P.dym(y, 1); b += gfun(kind, a, il, dy * dy) * (P.at(y, 1) - c); }
    if (x < W - 1) { dx = P.dxc(y, x + 1); dy = P.dym(y, x + 1); b += gfun(kind, a, il, dx * dx + dy * dy) * (P.at(y, x + 1) - c); }
    else           { dy = P.dym(y, W - 2); b += gfun(kind, a, il, dy * dy) * (P.at(y, W - 2) - c); }
    // y-neighbours: g1(dx mirrored, dy clamped); ghost g1(dx mirrored, 0)
    if (y > 0) { dx = P.dxm(y - 1, x); dy = P.dyc(y - 1, x); b += gfun(kind, a, il, dx * dx + dy * dy) * (P.at(y - 1, x) - c); }
    else       { dx = P.dxm(1, x); b += gfun(kind, a, il, dx * dx) * (P.at(1, x) - c); }
    if (y < H - 1) { dx = P.dxm(y + 1, x); dy = P.dyc(y + 1, x); b += gfun(kind, a, il, dx * dx + dy * dy) * (P.at(y + 1, x) - c); }
    else           { dx = P.dxm(H - 2, x); b += gfun(kind, a, il, dx * dx) * (P.at(H - 2, x) - c); }
    return b;
}

// face-flux form with zero flux through the border; includes the 1/h scalings
template <typename T>
__device__ T drift_conservative(const Plane<T>& P, int y, int x, int kind, T a, T il, T inv_h) {
    const int H = P.H, W = P.W;
    const T q = T(0.25) * inv_h;
    T b = T(0);
    if (x < W - 1) { T dn = (P.at(y, x + 1) - P.at(y, x)) * inv_h, dt = (P.dym(y, x) + P.dym(y, x + 1)) * q;
                     b += gfun(kind, a, il, dn * dn + dt * dt) * dn; }
    if (x > 0)     { T dn = (P.at(y, x) - P.at(y, x - 1)) * inv_h, dt = (P.dym(y, x - 1) + P.dym(y, x)) * q;
                     b -= gfun(kind, a, il, dn * dn + dt * dt) * dn; }
    if (y < H - 1) { T dn = (P.at(y + 1, x) - P.at(y, x)) * inv_h, dt = (P.dxm(y, x) + P.dxm(y + 1, x)) * q;
                     b += gfun(kind, a, il, dn * dn + dt * dt) * dn; }
    if (y > 0)     { T dn = (P.at(y, x) - P.at(y - 1, x)) * inv_h, dt = (P.dxm(y - 1, x) + P.dxm(y, x)) * q;
                     b -= gfun(kind, a, il, dn * dn + dt * dt) * dn; }
    return b * inv_h;
}

template <typename T>
__device__ __forceinline__ T drift_at(const Plane<T>& P, int y, int x, int kind, T a, T il, int conservative, T inv_h,
                                      T inv_h2) {
    return conservative ? drift_conservative(P, y, x, kind, a, il, inv_h) : drift_paper(P, y, x, kind, a, il) * inv_h2;
}

// dg/ds of gfun (spdekit.operators.dg_ds): the drift's adjoint needs dc/dX = 2 X dg/ds
template <typename T>
__device__ __forceinline__ T dgfun(int kind, T a, T il, T s) {
    switch (kind) {
        case 0: { const T q = T(1) + s * il; return -a * il / (T(2) * q * sqrt(q)); }    // charbonnier
        case 1: { const T q = T(1) + s * il; return -a * il / (q * q); }                  // perona-malik
        case 2: return -a * il * exp(-(s * il));                                          // exponential
        default: {                                                                         // weickert
            const T z = s * il;
            const T w = T(3.31488) / (z * z * z * z);
            const T e = exp(-w);  // dg/dz = -4 a e^-w w / z, 0 where e^-w underflows (z -> 0)
            return e > T(0) ? T(-4) * a * il * e * (w / z) : T(0);
        }
    }
}

// BEGIN drift_vjp (host-compilable: tests/test_cuda_source.py runs it on the CPU against numpy)
// One row (direction d, node i) of spdekit/backends/stencil_tables.py, built on the fly:
// c = g(X^2 + Y^2), X = sum_t xw[t] u[xi[t]], Y = sum_t yw[t] u[yi[t]], b_i += c (u[nb] - u_i).
// Directions d: +x, -x, +y, -y. Unused terms have index i and weight 0 (as in the tables).
template <typename T>
struct VjpRow { int nb; int xi[4]; int yi[4]; T xw[4]; T yw[4]; };

__device__ __forceinline__ int vjp_mirror(int k, int n) { return k < 0 ? 1 : (k >= n ? n - 2 : k); }

// append the mirrored central difference of (y, x) along axis (1: x, 0: y), times q; none on a border
template <typename T>
__device__ __forceinline__ int vjp_mirrored(int H, int W, int y, int x, int axis, T q, int* idx, T* wt, int r) {
    if (axis == 1) {
        if (x == 0 || x == W - 1) return r;
        idx[r] = y * W + x + 1; wt[r] = q; idx[r + 1] = y * W + x - 1; wt[r + 1] = -q;
    } else {
        if (y == 0 || y == H - 1) return r;
        idx[r] = (y + 1) * W + x; wt[r] = q; idx[r + 1] = (y - 1) * W + x; wt[r + 1] = -q;
    }
    return r + 2;
}

template <typename T>
__device__ void vjp_row(int conservative, int H, int W, int d, int y, int x, VjpRow<T>& R) {
    const int i = y * W + x;
    for (int t = 0; t < 4; ++t) { R.xi[t] = i; R.yi[t] = i; R.xw[t] = T(0); R.yw[t] = T(0); }
    const int sx = (d == 0) - (d == 1), sy = (d == 2) - (d == 3);
    const int along = sx != 0 ? 1 : 0;  // the axis of the direction (1: x)
    const int ny = y + sy, nx = x + sx;
    const bool inside = ny >= 0 && ny < H && nx >= 0 && nx < W;
    if (!conservative) {  // paper: c at the neighbour (a ghost: the mirrored node, 0 along)
        const int my = vjp_mirror(ny, H), mx = vjp_mirror(nx, W);
        R.nb = my * W + mx;
        if (inside) {  // clamped central difference of the neighbour along the direction
            if (along == 1) { R.xi[0] = my * W + min(mx + 1, W - 1); R.xi[1] = my * W + max(mx - 1, 0); }
            else            { R.xi[0] = min(my + 1, H - 1) * W + mx; R.xi[1] = max(my - 1, 0) * W + mx; }
            R.xw[0] = T(1); R.xw[1] = T(-1);
        }
        vjp_mirrored(H, W, my, mx, 1 - along, T(1), R.yi, R.yw, 0);
    } else {  // conservative: c on the face between i and n; a border face has zero flux (nb = i)
        if (!inside) { R.nb = i; return; }
        const int n = ny * W + nx;
        R.nb = n;
        R.xi[0] = n; R.xw[0] = T(1); R.xi[1] = i; R.xw[1] = T(-1);
        const int r = vjp_mirrored(H, W, y, x, 1 - along, T(0.25), R.yi, R.yw, 0);
        vjp_mirrored(H, W, ny, nx, 1 - along, T(0.25), R.yi, R.yw, r);
    }
}

// (J^T w)_j * h^2 for node j = (yj, xj) of one plane: gathers the terms of every row (d, i) that
// reads u_j (all such i lie within 2 nodes of j along each axis); no atomics, so deterministic.
template <typename T>
__device__ T drift_vjp_at(const T* u, const T* w, T a, T il, int kind, int H, int W, int conservative,
                          int yj, int xj) {
    const int j = yj * W + xj;
    T acc = T(0);
    VjpRow<T> R;
    for (int y = max(yj - 2, 0); y <= min(yj + 2, H - 1); ++y) {
        for (int x = max(xj - 2, 0); x <= min(xj + 2, W - 1); ++x) {
            const int i = y * W + x;
            for (int d = 0; d < 4; ++d) {
                vjp_row(conservative, H, W, d, y, x, R);
                bool hit = R.nb == j || i == j;
                for (int t = 0; t < 4; ++t) hit = hit || R.xi[t] == j || R.yi[t] == j;
                if (!hit) continue;
                T X = T(0), Y = T(0);
                for (int t = 0; t < 4; ++t) { X += R.xw[t] * u[R.xi[t]]; Y += R.yw[t] * u[R.yi[t]]; }
                const T s = X * X + Y * Y;
                const T wc = w[i] * gfun(kind, a, il, s);
                if (R.nb == j) acc += wc;
                if (i == j) acc -= wc;
                // w (u_n - u_i) (dc/dX) / X, dc/dX = 2 X dg/ds
                const T r = w[i] * (u[R.nb] - u[i]) * (T(2) * dgfun(kind, a, il, s));
                for (int t = 0; t < 4; ++t) {
                    if (R.xi[t] == j) acc += r * X * R.xw[t];
                    if (R.yi[t] == j) acc += r * Y * R.yw[t];
                }
            }
        }
    }
    return acc;
}
// END drift_vjp

__device__ __forceinline__ void block_add(double v, double* target) {
    __shared__ double buf[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
    if (lane == 0) buf[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = (lane < (blockDim.x >> 5)) ? buf[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
        if (lane == 0 && v != 0.0) atomicAdd(target, v);
    }
}

// grid: (ceil(C*H*W / blockDim), B): out = b(u)
template <typename T>
__global__ void drift_kernel(const T* __restrict__ u, const T* __restrict__ a, const T* __restrict__ il, int kind,
                             int C, int H, int W, int conservative, T inv_h, T inv_h2, T* __restrict__ out) {
    const int s = blockIdx.y;
    const long long n = (long long)C * H * W;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = (int)(i / ((long long)H * W));
    const int r = (int)(i - (long long)c * H * W);
    const int y = r / W, x = r - y * W;
    Plane<T> P{u + ((long long)s * C + c) * H * W, H, W};
    out[(long long)s * n + i] = drift_at(P, y, x, kind, a[s], il[s], conservative, inv_h, inv_h2);
}

// grid: (ceil(C*H*W / blockDim), B): out = J^T w, J = d b / d u (stencil_tables.py; il = inv_lam2 / h^2)
template <typename T>
__global__ void drift_vjp_kernel(const T* __restrict__ u, const T* __restrict__ w, const T* __restrict__ a,
                                 const T* __restrict__ il, int kind, int C, int H, int W, int conservative,
                                 T inv_h2, T* __restrict__ out) {
    const int s = blockIdx.y;
    const long long n = (long long)C * H * W;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = (int)(i / ((long long)H * W));
    const int r = (int)(i - (long long)c * H * W);
    const int y = r / W, x = r - y * W;
    const long long p = ((long long)s * C + c) * H * W;
    out[(long long)s * n + i] = drift_vjp_at(u + p, w + p, a[s], il[s], kind, H, W, conservative, y, x) * inv_h2;
}

// ssq[s] += sum of b(u)^2 over sample s (the drift is not stored)
template <typename T>
__global__ void norm_kernel(const T* __restrict__ u, const T* __restrict__ a, const T* __restrict__ il, int kind,
                            int C, int H, int W, int conservative, T inv_h, T inv_h2, double* __restrict__ ssq) {
    const int s = blockIdx.y;
    const long long n = (long long)C * H * W;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    double sq = 0.0;
    if (i < n) {
        const int c = (int)(i / ((long long)H * W));
        const int r = (int)(i - (long long)c * H * W);
        const int y = r / W, x = r - y * W;
        Plane<T> P{u + ((long long)s * C + c) * H * W, H, W};
        const T b = drift_at(P, y, x, kind, a[s], il[s], conservative, inv_h, inv_h2);
        sq = (double)b * (double)b;
    }
    block_add(sq, ssq + s);  // every thread of the block takes part in the reduction
}

template <typename T>
__global__ void g2_kernel(const T* __restrict__ u, const T* __restrict__ a, const T* __restrict__ il, int kind,
                          int C, int H, int W, T* __restrict__ out) {
    const int s = blockIdx.y;
    const long long n = (long long)C * H * W;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = (int)(i / ((long long)H * W));
    const int r = (int)(i - (long long)c * H * W);
    const int y = r / W, x = r - y * W;
    Plane<T> P{u + ((long long)s * C + c) * H * W, H, W};
    const T dx = P.dxm(y, x), dy = P.dym(y, x);
    out[(long long)s * n + i] = gfun(kind, a[s], il[s], dx * dx + dy * dy);
}

// out = u + fac[s] * b(u) + g2(u) * dW ; sets *flag if a result is not finite
template <typename T>
__global__ void step_kernel(const T* __restrict__ u, const T* __restrict__ dW, const T* __restrict__ fac,
                            const T* __restrict__ a1, const T* __restrict__ il1,
                            const T* __restrict__ a2, const T* __restrict__ il2, int kind1, int kind2,
                            int C, int H, int W, int conservative, T inv_h, T inv_h2,
                            T* __restrict__ out, int* __restrict__ flag) {
    const int s = blockIdx.y;
    const long long n = (long long)C * H * W;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int c = (int)(i / ((long long)H * W));
    const int r = (int)(i - (long long)c * H * W);
    const int y = r / W, x = r - y * W;
    Plane<T> P{u + ((long long)s * C + c) * H * W, H, W};
    const T b = drift_at(P, y, x, kind1, a1[s], il1[s], conservative, inv_h, inv_h2);
    T g2 = a2[s];
    if (il2[s] != T(0)) { const T dx = P.dxm(y, x), dy = P.dym(y, x); g2 = gfun(kind2, a2[s], il2[s], dx * dx + dy * dy); }
    const long long k = (long long)s * n + i;
    const T v = P.at(y, x) + fac[s] * b + g2 * dW[k];
    out[k] = v;
    if (!isfinite(v)) atomicOr(flag, 1);
}

// BEGIN philox (host-compilable: tests/test_cuda_source.py runs it on the CPU)
__device__ __forceinline__ unsigned int mulhi32(unsigned int a, unsigned int b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return (unsigned int)(((unsigned long long)a * b) >> 32);
#endif
}

// Philox4x32-10 (Salmon et al. 2011), the same function as spdekit/backends/philox.py
__device__ __forceinline__ void philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1) {
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const unsigned int hi0 = mulhi32(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        const unsigned int hi1 = mulhi32(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        const unsigned int n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}

// the normals of Philox block j of sample `sample` (counter (j, sample, draw, stream)), Box-Muller:
// float: 4 normals from 24-bit-exact uniforms of the four words
__device__ __forceinline__ void philox_normals(float* z, long long j, unsigned long long sample, unsigned int draw,
                                               unsigned int stream, unsigned int k0, unsigned int k1) {
    unsigned int c[4] = {(unsigned int)j, (unsigned int)sample, draw, stream};
    philox4x32_10(c, k0, k1);
    for (int p = 0; p < 2; ++p) {
        const float u1 = ((float)c[2 * p] + 0.5f) * 2.3283064365386963e-10f;
        const float u2 = ((float)c[2 * p + 1] + 0.5f) * 2.3283064365386963e-10f;
        const float r = sqrtf(-2.0f * logf(u1)), a = 6.283185307179586f * u2;
        z[2 * p] = r * cosf(a); z[2 * p + 1] = r * sinf(a);
    }
}

// double: 2 normals from 53-bit uniforms
__device__ __forceinline__ void philox_normals(double* z, long long j, unsigned long long sample, unsigned int draw,
                                               unsigned int stream, unsigned int k0, unsigned int k1) {
    unsigned int c[4] = {(unsigned int)j, (unsigned int)sample, draw, stream};
    philox4x32_10(c, k0, k1);
    const double s = 1.1102230246251565e-16;  // 2^-53
    const double u1 = ((double)(((unsigned long long)c[0] << 21) + (c[1] >> 11)) + 0.5) * s;
    const double u2 = ((double)(((unsigned long long)c[2] << 21) + (c[3] >> 11)) + 0.5) * s;
    const double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    z[0] = r * cos(a); z[1] = r * sin(a);
}
// END philox

// out (B, n): Philox block j of sample first + b at (draw, stream); 4 normals per block (float), 2 (double)
template <typename T>
__device__ __forceinline__ void normal_fill(T* __restrict__ out, int B, long long n, unsigned int k0, unsigned int k1,
                                            unsigned long long first, unsigned int draw, unsigned int stream) {
    constexpr int per = sizeof(T) == 4 ? 4 : 2;
    const long long nblk = (n + per - 1) / per;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nblk * B) return;
    const int b = (int)(t / nblk);
    const long long j = t - (long long)b * nblk;
    T z[per];
    philox_normals(z, j, first + b, draw, stream, k0, k1);
    T* row = out + (long long)b * n + per * j;
    for (int q = 0; q < per; ++q) if (per * j + q < n) row[q] = z[q];
}

__global__ void normal_f32(float* __restrict__ out, int B, long long n, unsigned int k0, unsigned int k1,
                           unsigned long long first, unsigned int draw, unsigned int stream) {
    normal_fill(out, B, n, k0, k1, first, draw, stream);
}

__global__ void normal_f64(double* __restrict__ out, int B, long long n, unsigned int k0, unsigned int k1,
                           unsigned long long first, unsigned int draw, unsigned int stream) {
    normal_fill(out, B, n, k0, k1, first, draw, stream);
}

// BEGIN run (host-compilable: tests/test_cuda_source.py runs a whole fused run on the CPU against numpy)
// A fused run (EMRun): the coefficients of every step are uploaded once, as float64 rows
// coef[(k * 4 + q) * nb + (nb > 1 ? s : 0)], q = alpha1, il1, alpha2, il2 (il scaled as em_step scales them,
// clamped to T's range on the host); dts[2 k], dts[2 k + 1] = dt, sqrt(dt) of step k.
template <typename T>
struct StepCoef { T a1, il1, a2, il2; };

template <typename T>
__device__ __forceinline__ StepCoef<T> step_coef(const double* coef, int nb, int k, int s) {
    const double* r = coef + (long long)k * 4 * nb + (nb > 1 ? s : 0);
    return StepCoef<T>{T(r[0]), T(r[nb]), T(r[2 * nb]), T(r[3 * nb])};
}

// the step factor of eq. (39): dt untamed; dt / (1 + dt ||b||^gamma) from the drift's sum of squares ssq
__device__ __forceinline__ double step_factor(double dt, int tamed, double ssq, int rms, double gamma, long long count) {
    if (!tamed) return dt;
    const double norm = sqrt(rms ? ssq / (double)count : ssq);
    return dt / (1.0 + dt * pow(norm, gamma));
}

// step k for Philox block j of sample s (the `per` nodes per*j .. of its C*H*W values): the noise is
// drawn here, the normals of normal_f32/normal_f64 at draw `draw`; returns 1 if a result is not finite
template <typename T>
__device__ int run_step_block(const T* u, T* out, const double* coef, int nb, const double* dts, int k, int s,
                              long long j, int kind1, int kind2, int C, int H, int W, int conservative, T inv_h,
                              T inv_h2, unsigned int k0, unsigned int k1, unsigned long long first, unsigned int draw,
                              unsigned int stream, int tamed, double ssq, int rms, double gamma) {
    constexpr int per = sizeof(T) == 4 ? 4 : 2;
    const long long n = (long long)C * H * W;
    T z[per];
    philox_normals(z, j, first + s, draw, stream, k0, k1);
    const StepCoef<T> c = step_coef<T>(coef, nb, k, s);
    const T fac = T(step_factor(dts[2 * k], tamed, ssq, rms, gamma, n));
    const T sq = T(dts[2 * k + 1]);
    int bad = 0;
    for (int q = 0; q < per; ++q) {
        const long long i = per * j + q;
        if (i >= n) break;
        const int ch = (int)(i / ((long long)H * W));
        const int r = (int)(i - (long long)ch * H * W);
        const int y = r / W, x = r - y * W;
        Plane<T> P{u + ((long long)s * C + ch) * H * W, H, W};
        const T b = drift_at(P, y, x, kind1, c.a1, c.il1, conservative, inv_h, inv_h2);
        T g2 = c.a2;
        if (c.il2 != T(0)) { const T dx = P.dxm(y, x), dy = P.dym(y, x); g2 = gfun(kind2, c.a2, c.il2, dx * dx + dy * dy); }
        const T v = P.at(y, x) + fac * b + g2 * (sq * z[q]);
        out[(long long)s * n + i] = v;
        bad |= !isfinite(v);
    }
    return bad;
}

// the drift at node i of sample s, step k (the norm kernel's summand)
template <typename T>
__device__ __forceinline__ T run_drift_at(const T* u, const double* coef, int nb, int k, int s, long long i, int kind1,
                                          int C, int H, int W, int conservative, T inv_h, T inv_h2) {
    const int ch = (int)(i / ((long long)H * W));
    const int r = (int)(i - (long long)ch * H * W);
    const int y = r / W, x = r - y * W;
    const StepCoef<T> c = step_coef<T>(coef, nb, k, s);
    Plane<T> P{u + ((long long)s * C + ch) * H * W, H, W};
    return drift_at(P, y, x, kind1, c.a1, c.il1, conservative, inv_h, inv_h2);
}
// END run

// grid: (ceil(C*H*W / blockDim), B): ssq[s] += sum of b(u)^2 over sample s at step k of a fused run
template <typename T>
__global__ void run_norm_kernel(const T* __restrict__ u, const double* __restrict__ coef, int nb, int k, int kind1,
                                int C, int H, int W, int conservative, T inv_h, T inv_h2, double* __restrict__ ssq) {
    const int s = blockIdx.y;
    const long long n = (long long)C * H * W;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    double sq = 0.0;
    if (i < n) {
        const T b = run_drift_at(u, coef, nb, k, s, i, kind1, C, H, W, conservative, inv_h, inv_h2);
        sq = (double)b * (double)b;
    }
    block_add(sq, ssq + s);
}

// grid: (ceil(Philox blocks per sample / blockDim), B): step k of a fused run, u -> out, noise drawn in the
// kernel. Tamed: ssq holds this step's squared drift norms (run_norm_kernel); the kernel zeroes ssq_next (the
// other half of a two-row ring) for the next step's norm kernel. A non-finite result: *first_bad = min(k, ...).
template <typename T>
__global__ void run_step_kernel(const T* __restrict__ u, const double* __restrict__ coef, int nb,
                                const double* __restrict__ dts, int k, int kind1, int kind2, int C, int H, int W,
                                int conservative, T inv_h, T inv_h2, unsigned int k0, unsigned int k1,
                                unsigned long long first, unsigned int draw, unsigned int stream, int tamed,
                                const double* __restrict__ ssq, double* __restrict__ ssq_next, int rms, double gamma,
                                T* __restrict__ out, int* __restrict__ first_bad) {
    constexpr int per = sizeof(T) == 4 ? 4 : 2;
    const int s = blockIdx.y;
    const long long n = (long long)C * H * W;
    const long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (tamed && blockIdx.x == 0 && threadIdx.x == 0) ssq_next[s] = 0.0;
    if (j >= (n + per - 1) / per) return;
    if (run_step_block(u, out, coef, nb, dts, k, s, j, kind1, kind2, C, H, W, conservative, inv_h, inv_h2, k0, k1,
                       first, draw, stream, tamed, tamed ? ssq[s] : 0.0, rms, gamma))
        atomicMin(first_bad, k);
}
"""

NAMES = [f"{k}<{t}>" for k in ("drift_kernel", "drift_vjp_kernel", "norm_kernel", "g2_kernel", "step_kernel",
                                 "run_norm_kernel", "run_step_kernel") for t in ("float", "double")]
NAMES += ["normal_f32", "normal_f64"]

__all__ = ["SOURCE", "NAMES"]
