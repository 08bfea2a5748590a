"""Branch-free log and sin/cos for numba loops that LLVM can vectorise.

numba compiles ``math.log``/``np.sin`` to calls into the C math library, one element at a time (no
SVML here), and a loop that calls them is not vectorised. For the Box-Muller transform of the
Philox generator (:mod:`spdekit.backends.philox`) these calls were 90% of the cost of a normal.
The functions below are the Cephes algorithms (S. L. Moshier, "Methods and Programs for
Mathematical Functions", 1989; the single-precision ``logf``/``sinf``/``cosf`` and double ``log``,
``sin``, ``cos``) written without branches or calls: exponent and mantissa by bit casts, octant
reduction by integer arithmetic and selects, minimax polynomials. Accuracy on the ranges the
generator uses (measured in tests/test_random.py against float64/long references): log within
1 ulp, sin and cos within 2 ulp (near their zeros at multiples of pi/2: within 2e-14 absolute in
float32, 1e-30 in float64), i.e. about as accurate as the C library's (glibc's float32 log is off by up to 4 ulp on
these inputs).

Domains: ``log`` for positive normal numbers (the generator's uniforms lie in (0, 1]); ``sincos``
for 0 <= a <= 2 pi (the octant reduction is exact there; it is not a general-argument sin).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_F32 = np.float32
_I32 = np.int32
_I64 = np.int64
# value-changing fast-math flags are left out (no reassoc: the split ln 2 and pi/4 constants rely on
# the order of evaluation)
FASTMATH = {"nsz", "arcp", "contract"}


def _bitcast(src, dst_bits: int, dst_ir):
    def typer(typingctx, x):
        if src == "int":
            if not isinstance(x, types.Integer):
                return None
            sig = (types.float32 if dst_bits == 32 else types.float64)(x)
        else:
            if x != src:
                return None
            sig = (types.int32 if dst_bits == 32 else types.int64)(x)

        def codegen(context, builder, signature, args):
            v = args[0]
            if src == "int" and x.bitwidth != dst_bits:
                v = builder.trunc(v, ir.IntType(dst_bits)) if x.bitwidth > dst_bits else builder.zext(
                    v, ir.IntType(dst_bits))
            return builder.bitcast(v, dst_ir)

        return sig, codegen

    return typer


f32_bits = intrinsic(_bitcast(types.float32, 32, ir.IntType(32)))
bits_f32 = intrinsic(_bitcast("int", 32, ir.FloatType()))
f64_bits = intrinsic(_bitcast(types.float64, 64, ir.IntType(64)))
bits_f64 = intrinsic(_bitcast("int", 64, ir.DoubleType()))


@njit(inline="always", fastmath=FASTMATH)
def log_f32(x):
    """Natural log of a positive normal float32 (Cephes logf)."""
    ix = f32_bits(x)
    e = ((ix >> _I32(23)) & _I32(0xFF)) - _I32(126)
    m = bits_f32((ix & _I32(0x007FFFFF)) | _I32(0x3F000000))  # x = m 2^e, m in [1/2, 1)
    small = m < _F32(0.70710678118654752440)
    e = e - _I32(1) if small else e
    x = (m + m - _F32(1.0)) if small else (m - _F32(1.0))  # in [sqrt(1/2) - 1, sqrt(2) - 1)
    z = x * x
    y = ((((((((_F32(7.0376836292e-2) * x - _F32(1.1514610310e-1)) * x + _F32(1.1676998740e-1)) * x
               - _F32(1.2420140846e-1)) * x + _F32(1.4249322787e-1)) * x - _F32(1.6668057665e-1)) * x
            + _F32(2.0000714765e-1)) * x - _F32(2.4999993993e-1)) * x + _F32(3.3333331174e-1)) * x * z
    fe = _F32(e)
    y = y + _F32(-2.12194440e-4) * fe  # ln 2 = 0.693359375 - 2.12194440e-4 (split for accuracy)
    y = y - _F32(0.5) * z
    return (x + y) + _F32(0.693359375) * fe


@njit(inline="always", fastmath=FASTMATH)
def sincos_f32(a):
    """(sin a, cos a) for float32 0 <= a <= 2 pi (Cephes sinf/cosf)."""
    j = np.int32(a * _F32(1.27323954473516))  # 4 / pi: octant
    j = (j + _I32(1)) & _I32(-2)  # even: x in [-pi/4, pi/4]
    y = _F32(j)
    x = ((a - y * _F32(0.78515625)) - y * _F32(2.4187564849853515625e-4)) - y * _F32(3.77489497744594108e-8)
    z = x * x
    s = ((_F32(-1.9515295891e-4) * z + _F32(8.3321608736e-3)) * z - _F32(1.6666654611e-1)) * z * x + x
    c = (((_F32(2.443315711809948e-5) * z - _F32(1.388731625493765e-3)) * z + _F32(4.166664568298827e-2)) * z * z
         - _F32(0.5) * z + _F32(1.0))
    return _rotate(j, s, c)


@njit(inline="always")
def _rotate(j, s, c):
    """sin and cos of x + q pi/2, q = j/2 mod 4, from s = sin x, c = cos x (selects, no branches)."""
    q = (j >> 1) & 3
    swap = (q & 1) != 0
    sn = c if swap else s
    cs = s if swap else c
    sn = -sn if (q & 2) != 0 else sn
    cs = -cs if ((q + 1) & 2) != 0 else cs
    return sn, cs


@njit(inline="always", fastmath=FASTMATH)
def log_f64(x):
    """Natural log of a positive normal float64 (Cephes log, rational approximation)."""
    ix = f64_bits(x)
    e = ((ix >> _I64(52)) & _I64(0x7FF)) - _I64(1022)
    m = bits_f64((ix & _I64(0x000FFFFFFFFFFFFF)) | _I64(0x3FE0000000000000))  # [1/2, 1)
    small = m < 0.70710678118654752440
    e = e - 1 if small else e
    x = (m + m - 1.0) if small else (m - 1.0)
    z = x * x
    p = ((((1.01875663804580931796e-4 * x + 4.97494994976747001425e-1) * x + 4.70579119878881725854e0) * x
          + 1.44989225341610930846e1) * x + 1.79368678507819816313e1) * x + 7.70838733755885391666e0
    q = ((((x + 1.12873587189167450590e1) * x + 4.52279145837532221105e1) * x + 8.29875266912776603211e1) * x
         + 7.11544750618563894466e1) * x + 2.31251620126765340583e1
    fe = np.float64(e)
    y = x * (z * p / q) - fe * 2.121944400546905827679e-4
    y = y - 0.5 * z
    return (x + y) + fe * 0.693359375


@njit(inline="always", fastmath=FASTMATH)
def sincos_f64(a):
    """(sin a, cos a) for float64 0 <= a <= 2 pi (Cephes sin/cos)."""
    j = np.int64(a * 1.2732395447351628)
    j = (j + 1) & _I64(-2)
    y = np.float64(j)
    x = ((a - y * 7.85398125648498535156e-1) - y * 3.77489470793079817668e-8) - y * 2.69515142907905952645e-15
    z = x * x
    s = x + x * z * (((((1.58962301576546568060e-10 * z - 2.50507477628578072866e-8) * z
                        + 2.75573136213857245213e-6) * z - 1.98412698295895385996e-4) * z
                      + 8.33333333332211858878e-3) * z - 1.66666666666666307295e-1)
    c = 1.0 - 0.5 * z + z * z * (((((-1.13585365213876817300e-11 * z + 2.08757008419747316778e-9) * z
                                    - 2.75573141792967388112e-7) * z + 2.48015872888517045348e-5) * z
                                  - 1.38888888888730564116e-3) * z + 4.16666666666665929218e-2)
    return _rotate(j, s, c)
