"""Stiff-stable solvers (spdekit.implicit, backends/implicit_numpy.py and implicit_numba.py): the frozen
operator is the drift, the solves solve, AOS is a literal per-axis tridiagonal solve, the theta-scheme
is its closed form on the linear Gaussian problem (one step and the stationary variance), numba equals
numpy, the schemes stay stable at 50 times the explicit bound, strong order 1 on the heat equation,
serialisation and input checks."""

import math
import warnings

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import spdekit as sk
from spdekit import schedules as S
from spdekit.backends import implicit_numba as JN
from spdekit.backends import implicit_numpy as JP
from spdekit.images import load_image
from spdekit.implicit import step_mean, step_plan
from spdekit.problems import LinearHeatEquation
from spdekit.solvers import solver_from_dict

STENCILS = ("paper", "conservative")


def _field(shape=(2, 3, 7, 9), seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------- the frozen operator


@pytest.mark.parametrize("stencil", STENCILS)
@pytest.mark.parametrize("family", ["charbonnier", "weickert"])
@pytest.mark.parametrize("mod", [JP, JN], ids=["numpy", "numba"])
def test_frozen_operator_applied_to_its_state_is_the_drift(stencil, family, mod):
    u = _field()
    a, il = np.array([0.7, 1.3]), np.array([2.0, 0.5])
    w = mod.frozen_weights(u, a, il, stencil, 1.3, family)
    b = sk.get_backend("numpy").drift(u, a, il, stencil, 1.3, diffusivity=family)
    np.testing.assert_allclose(JP.apply_operator(w, u), b, rtol=0, atol=1e-12 * np.abs(b).max())
    assert (w >= 0).all()


@pytest.mark.parametrize("stencil", STENCILS)
@pytest.mark.parametrize("family", ["charbonnier", "perona-malik", "exponential", "weickert"])
@pytest.mark.parametrize("shape", [(1, 1, 3, 3), (2, 1, 4, 5), (1, 2, 37, 21)], ids=["3x3", "4x5", "37x21"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_frozen_weights_equal_the_reference(stencil, family, shape, dtype):
    """The numba kernel evaluates each diffusivity once per node (paper) or face (conservative) and writes
    it to every link that uses it; the reference reads the stencil tables link by link. 37 rows: several
    row blocks of the kernel's tasks, and a block boundary next to the border."""
    u = _field(shape, seed=3, dtype=dtype)
    B = shape[0]
    a, il = np.linspace(0.7, 1.3, B), np.linspace(2.0, 0.5, B)
    wn = JN.frozen_weights(u, a, il, stencil, 0.8, family)
    wp = JP.frozen_weights(u, a, il, stencil, 0.8, family)
    assert wn.shape == wp.shape == (4,) + shape and wn.dtype == np.float64
    tol = 1e-12 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(wn, wp, rtol=tol, atol=tol * np.abs(wp).max())


def test_conservative_operator_is_symmetric_and_the_paper_one_is_not():
    u = _field()
    a, il = np.array([0.7, 1.3]), np.array([2.0, 0.5])
    w = JP.frozen_weights(u, a, il, "conservative")
    # one diffusivity per face (evaluated from either side: equal to rounding)
    np.testing.assert_allclose(w[0][..., :-1], w[1][..., 1:], rtol=1e-15, atol=0)
    np.testing.assert_allclose(w[2][..., :-1, :], w[3][..., 1:, :], rtol=1e-15, atol=0)
    assert (w[0][..., -1] == 0).all() and (w[3][..., 0, :] == 0).all()  # zero flux through the border
    wp = JP.frozen_weights(u, a, il, "paper")
    assert np.abs(wp[0][..., :-1] - wp[1][..., 1:]).max() > 1e-3  # the link's weight is the neighbour's g


def _dense(w, b, c, scale):
    """M = I - scale A of plane (b, c), assembled column by column from the operator."""
    H, W = w.shape[-2:]
    n = H * W
    M = np.eye(n)
    for j in range(n):
        e = np.zeros((1, 1, H, W))
        e.flat[j] = 1.0
        M[:, j] -= scale * JP.apply_operator(w[:, b:b + 1, c:c + 1], e).ravel()
    return M


@pytest.mark.parametrize("stencil,method", [("conservative", "cg"), ("conservative", "bicgstab"),
                                            ("paper", "bicgstab")])
@pytest.mark.parametrize("mod", [JP, JN], ids=["numpy", "numba"])
@pytest.mark.parametrize("preconditioner", ["jacobi", "dct"])
def test_krylov_solves_reach_their_tolerance(stencil, method, mod, preconditioner):
    u = _field()
    w = JP.frozen_weights(u, np.array([0.7, 1.3]), np.array([2.0, 0.5]), stencil)
    rhs = _field(seed=1)
    rhs[0, 1] = 0.0  # a zero right-hand side: x = 0 without an iteration
    scale = np.array([0.8, 20.0])
    x, info = mod.solve(w, rhs, scale, method, rtol=1e-10, preconditioner=preconditioner, stencil=stencil)
    assert (info["residual"] <= 1e-10).all()
    assert info["converged"] and info["iterations"][0, 1] == 0 and (x[0, 1] == 0).all()
    for b, c in ((0, 0), (1, 2)):
        ref = np.linalg.solve(_dense(w, b, c, scale[b]), rhs[b, c].ravel())
        np.testing.assert_allclose(x[b, c].ravel(), ref, rtol=0, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("stencil", STENCILS)
@pytest.mark.parametrize("mod", [JP, JN], ids=["numpy", "numba"])
def test_both_preconditioners_give_the_same_solution(stencil, mod):
    u = _field((2, 1, 24, 20))
    w = JP.frozen_weights(u, np.array([0.7, 1.3]), np.array([2.0, 0.5]), stencil)
    rhs = _field((2, 1, 24, 20), 1)
    xs, its = [], []
    for pc in ("jacobi", "dct"):
        x, info = mod.solve(w, rhs, np.array([0.8, 50.0]), JP.METHODS[stencil], rtol=1e-9, preconditioner=pc,
                            stencil=stencil)
        assert info["converged"]
        xs.append(x)
        its.append(info["iterations"])
    np.testing.assert_allclose(xs[1], xs[0], rtol=0, atol=1e-7 * np.abs(xs[0]).max())
    assert its[1][1, 0] < its[0][1, 0]  # at a large step the DCT preconditioner needs fewer iterations


@pytest.mark.parametrize("stencil", STENCILS)
@pytest.mark.parametrize("mod", [JP, JN], ids=["numpy", "numba"])
def test_dct_preconditioner_solves_a_constant_diffusivity_plane_in_one_iteration(stencil, mod):
    """Constant state: every link's weight is alpha / h^2 and M = I - s (alpha / h^2) L. The conservative
    stencil's L is the cell-centred Neumann Laplacian (DCT-II): one iteration. The paper stencil's mirror
    ghost makes it node-centred (DCT-I): exact with dct_type=1; the solver's DCT-II takes a few more."""
    u = np.full((2, 1, 16, 12), 0.3)
    w = JP.frozen_weights(u, np.array([0.7, 1.3]), np.array([2.0, 0.5]), stencil, spacing=0.5)
    rhs = _field((2, 1, 16, 12), 2)
    scale = np.array([3.0, 40.0])
    x, info = mod.solve(w, rhs, scale, JP.METHODS[stencil], rtol=1e-10, preconditioner="dct", stencil=stencil)
    ref = np.stack([np.linalg.solve(_dense(w, b, 0, scale[b]), rhs[b, 0].ravel()) for b in range(2)])
    np.testing.assert_allclose(x[:, 0].reshape(2, -1), ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    if stencil == "conservative":
        assert (info["iterations"] == 1).all()
    else:
        assert (info["iterations"] <= 10).all()
        pc = JP.DCTPreconditioner(w, scale, stencil, dct_type=1)
        mv = lambda y: JP.system_apply(w, y, scale)  # noqa: E731
        y, it, rr, bb = JP._bicgstab(mv, pc, rhs, 1e-10, 50)
        assert (it == 1).all()
        np.testing.assert_allclose(y[:, 0].reshape(2, -1), ref, rtol=0, atol=1e-9 * np.abs(ref).max())


def test_conjugate_gradients_are_not_used_for_the_paper_stencil():
    """CG on the non-symmetric paper operator does not converge: the solver must pick BiCGSTAB."""
    u = _field()
    w = JP.frozen_weights(u, np.array([0.7, 1.3]), np.array([2.0, 0.5]), "paper")
    _, info = JP.solve(w, _field(seed=1), np.array([0.8, 20.0]), "cg", rtol=1e-10, maxiter=300)
    assert not info["converged"]
    assert JP.METHODS == {"conservative": "cg", "paper": "bicgstab"}


# ----------------------------------------------------------------------------- AOS


def _line_matrix(fw, bw, tau):
    """I - tau A_l on one line, written out: node k couples to k+1 with fw[k], to k-1 with bw[k];
    beyond an end the neighbour is the mirror image (k+1 -> k-1 at the last node, k-1 -> k+1 at the first)."""
    n = len(fw)
    M = np.eye(n)
    for k in range(n):
        up = k + 1 if k < n - 1 else n - 2
        dn = k - 1 if k > 0 else 1
        M[k, k] += tau * (fw[k] + bw[k])
        M[k, up] -= tau * fw[k]
        M[k, dn] -= tau * bw[k]
    return M


@pytest.mark.parametrize("stencil", STENCILS)
@pytest.mark.parametrize("mod", [JP, JN], ids=["numpy", "numba"])
def test_aos_equals_a_literal_per_axis_tridiagonal_solve(stencil, mod):
    u = _field()
    w = JP.frozen_weights(u, np.array([0.7, 1.3]), np.array([2.0, 0.5]), stencil)
    f = _field(seed=2)
    dt = np.array([0.3, 5.0])
    got = mod.aos_solve(w, f, dt)
    B, C, H, W = u.shape
    for b in range(B):
        tau = 2 * dt[b]
        for c in range(C):
            yx = np.stack([np.linalg.solve(_line_matrix(w[0, b, c, y], w[1, b, c, y], tau), f[b, c, y])
                           for y in range(H)])
            yy = np.stack([np.linalg.solve(_line_matrix(w[2, b, c, :, x], w[3, b, c, :, x], tau), f[b, c, :, x])
                           for x in range(W)], axis=1)
            np.testing.assert_allclose(got[b, c], 0.5 * (yx + yy), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numba_aos_solve_with_scale_and_dtype_equals_the_reference(dtype):
    """The numba solve folds the AOS combination and the step's factor into its y-direction sweep."""
    u = _field((2, 2, 19, 40))
    w = JP.frozen_weights(u, np.array([0.7, 1.3]), np.array([2.0, 0.5]), "paper")
    f = _field((2, 2, 19, 40), seed=2)
    dt, scale = np.array([0.3, 5.0]), np.array([0.9, 1.1])
    got = JN.aos_solve(w, f, dt, scale, dtype)
    want = JP.aos_solve(w, f, dt, scale, dtype)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-12)
    np.testing.assert_allclose(want, scale[:, None, None, None] * JP.aos_solve(w, f, dt), rtol=1e-6)


# ----------------------------------------------------------------------------- closed forms


def _neumann_laplacian(n):
    """The 1D conservative (zero-flux) Laplacian, written out."""
    L = np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    L[0, 0] = L[-1, -1] = -1.0
    return L


def test_schedule_step_means_are_exact():
    for sched in (S.Constant(1.7), S.Geometric(0.01, 2.0, 2.0), S.Polynomial(0.2, 3.0, 2.0, 1.5),
                  S.AnisotropyRamp(0.025, 0.5, 2.0)):
        for t, dt in ((0.0, 0.1), (1.3, 0.37), (1.9, 0.05)):
            for power in (1, 2):
                ref = scipy.integrate.quad(lambda s, f=sched, p=power: f(s) ** p, t, t + dt, epsabs=0,
                                           epsrel=1e-13)[0] / dt
                assert step_mean(sched, np.array([t]), dt, power)[0] == pytest.approx(ref, rel=1e-9), (sched, t, power)


@pytest.mark.parametrize("theta", [0.5, 1.0])
@pytest.mark.parametrize("coefficients", ["transformed", "integral", "left"])
def test_one_theta_step_is_its_closed_form_on_the_linear_gaussian_problem(theta, coefficients):
    """Heat equation with the Section 5.2 schedules alpha1, alpha2 (geometric), written out with the
    closed-form integrals of the geometric schedule (implicit.py module doc):

    * integral: (I - theta dt abar1 L) U+ = (I + (1 - theta) dt abar1 L) U + abar2 dW, abar1 the mean of
      alpha1 over the step, abar2^2 dt = int alpha2^2 (the noise integral's exact variance);
    * transformed: the same in V = phi U, phi = sqrt(alpha1) / alpha2, with the scalar C = ln(phi(t+dt) / phi(t))
      added to dtau L (trapezoidal whatever theta) and the noise amplitude sqrt(dtau / dt) in V;
    * left: alpha1(t), alpha2(t)."""
    H, W = 5, 6
    a1, a2 = S.Geometric(0.5, 64.0, 2.0), S.Geometric(0.01, 2.0, 2.0)
    spde = sk.AnisotropicSPDE(a1, float("inf"), a2, float("inf"), stencil="conservative")
    t, dt = 1.4, 0.1
    L = np.kron(_neumann_laplacian(H), np.eye(W)) + np.kron(np.eye(H), _neumann_laplacian(W))
    eye = np.eye(H * W)
    k1, k2 = math.log(64 / 0.5) / 2, math.log(2 / 0.01) / 2
    dtau = (a1(t + dt) - a1(t)) / k1
    var = (a2(t + dt) ** 2 - a2(t) ** 2) / (2 * k2)  # int alpha2^2 over the step
    u, dW = _field((1, 1, H, W), 3).ravel(), 0.3 * _field((1, 1, H, W), 4).ravel()
    if coefficients == "left":
        A = dt * a1(t) * L
        ref = np.linalg.solve(eye - theta * A, (eye + (1 - theta) * A) @ u + a2(t) * dW)
    elif coefficients == "integral":
        A = dtau * L
        ref = np.linalg.solve(eye - theta * A, (eye + (1 - theta) * A) @ u + math.sqrt(var / dt) * dW)
    else:
        phi = lambda s: math.sqrt(a1(s)) / a2(s)  # noqa: E731
        C = math.log(phi(t + dt) / phi(t))
        v = np.linalg.solve((1 - C / 2) * eye - theta * dtau * L,
                            ((1 + C / 2) * eye + (1 - theta) * dtau * L) @ (phi(t) * u) + math.sqrt(dtau / dt) * dW)
        ref = v / phi(t + dt)
    for backend in ("numpy", "numba"):
        solver = sk.LinearlyImplicitTheta(theta, rtol=1e-13, coefficients=coefficients)
        got, ok = solver.step(spde, t, u.reshape(1, 1, H, W), dt, dW.reshape(1, 1, H, W), backend=backend)
        assert ok
        np.testing.assert_allclose(got.ravel(), ref, rtol=0, atol=1e-11)


@pytest.mark.parametrize("coefficients", ["transformed", "integral", "left"])
def test_one_aos_step_is_its_closed_form(coefficients):
    """AOS on the same problem: (1/2) sum_l (I - 2 dtau L_l)^{-1} (U + noise), in V for "transformed"
    (C split evenly between the axes, trapezoidal)."""
    H, W = 5, 6
    a1, a2 = S.Geometric(0.5, 64.0, 2.0), S.Geometric(0.01, 2.0, 2.0)
    spde = sk.AnisotropicSPDE(a1, float("inf"), a2, float("inf"), stencil="conservative")
    t, dt = 1.4, 0.1
    Lx, Ly = np.kron(np.eye(H), _neumann_laplacian(W)), np.kron(_neumann_laplacian(H), np.eye(W))
    eye = np.eye(H * W)
    dtau = (a1(t + dt) - a1(t)) / (math.log(128) / 2)
    var = (a2(t + dt) ** 2 - a2(t) ** 2) / math.log(200)
    u, dW = _field((1, 1, H, W), 3).ravel(), 0.3 * _field((1, 1, H, W), 4).ravel()

    def aos(tau, C, u, noise):
        return 0.5 * sum(np.linalg.solve((1 - C / 2) * eye - 2 * tau * Ll, (1 + C / 2) * u + noise) for Ll in (Lx, Ly))

    if coefficients == "left":
        ref = aos(dt * a1(t), 0.0, u, a2(t) * dW)
    elif coefficients == "integral":
        ref = aos(dtau, 0.0, u, math.sqrt(var / dt) * dW)
    else:
        phi = lambda s: math.sqrt(a1(s)) / a2(s)  # noqa: E731
        ref = aos(dtau, math.log(phi(t + dt) / phi(t)), phi(t) * u, math.sqrt(dtau / dt) * dW) / phi(t + dt)
    for backend in ("numpy", "numba"):
        got, ok = sk.AOSEulerMaruyama(coefficients).step(spde, t, u.reshape(1, 1, H, W), dt,
                                                           dW.reshape(1, 1, H, W), backend=backend)
        np.testing.assert_allclose(got.ravel(), ref, rtol=0, atol=1e-12)


def test_the_transform_falls_back_where_it_does_not_apply():
    """alpha1 = 0 (pure noise): no scaling, the exact variance of the noise integral; a sample whose C
    would exceed 1 takes the 'integral' step."""
    noise = sk.AnisotropicSPDE.pure_noise(S.Geometric(0.01, 2.0, 2.0))
    plan = step_plan(noise, 1.0, 0.1, 2)
    assert (plan.shift == 0).all() and (plan.factor == 1).all()
    assert plan.coef.alpha2[0] ** 2 * 0.1 == pytest.approx(
        scipy.integrate.quad(lambda s: noise.alpha2(s) ** 2, 1.0, 1.1)[0], rel=1e-12)
    grow = sk.AnisotropicSPDE(S.Geometric(0.5, 1e6, 1.0), float("inf"), 1.0, float("inf"))  # C = k1 dt / 2 > 0
    small, big = step_plan(grow, 0.0, 0.01, 1), step_plan(grow, 0.0, 0.5, 1)
    assert small.shift[0] == pytest.approx(0.5 * math.log(2e6) * 0.01) and big.shift[0] == 0.0
    assert step_plan(grow, 0.0, 0.5, 1, coefficients="integral").coef.alpha2[0] == big.coef.alpha2[0]


def _scheme_matrices(solver, spde, t, dt, shape):
    """(R, P): u+ = R u + P dW, read off the (linear) step column by column."""
    n = int(np.prod(shape))
    cols = []
    for which in ("u", "dW"):
        m = np.empty((n, n))
        for j in range(n):
            e = np.zeros((1, 1) + shape)
            e.flat[j] = 1.0
            z = np.zeros_like(e)
            out, _ = solver.step(spde, t, e if which == "u" else z, dt, z if which == "u" else e, backend="numpy")
            m[:, j] = out.ravel()
        cols.append(m)
    return cols


@pytest.mark.parametrize("theta", [0.5, 0.75, 1.0])
def test_stationary_variance_of_the_theta_scheme_is_its_closed_form(theta):
    """On dU = A U dt + sigma dW (A = alpha1 L symmetric) the theta-scheme's stationary covariance on the
    non-constant modes is sigma^2 [(-A)(2 + (2 theta - 1) dt (-A))]^{-1}: the exact sigma^2 (-2A)^{-1} for
    theta = 1/2 at any dt, smaller for theta > 1/2. Here dt = 25 times the explicit bound."""
    shape, a1, sigma = (4, 5), 3.0, 0.7
    spde = LinearHeatEquation(alpha1=a1, alpha2=sigma)
    dt = 25 * spde.stability_bound(0, 1)
    R, P = _scheme_matrices(sk.LinearlyImplicitTheta(theta, rtol=1e-13), spde, 0.0, dt, shape)
    n = R.shape[0]
    Pi = np.eye(n) - 1.0 / n  # projection off the constant mode (eigenvalue 0: no stationary law)
    chain = scipy.linalg.solve_discrete_lyapunov(Pi @ R @ Pi, Pi @ (dt * P @ P.T) @ Pi)
    A = a1 * (np.kron(_neumann_laplacian(4), np.eye(5)) + np.kron(np.eye(4), _neumann_laplacian(5)))
    exact = sigma**2 * np.linalg.pinv(-A @ (2 * np.eye(n) - (2 * theta - 1) * dt * A))
    np.testing.assert_allclose(chain, exact, rtol=0, atol=1e-9 * np.abs(exact).max())
    if theta == 0.5:
        np.testing.assert_allclose(chain, sigma**2 * np.linalg.pinv(-2 * A), rtol=0, atol=1e-9 * np.abs(exact).max())


# ----------------------------------------------------------------------------- numba == numpy


CASES = {
    "paper-additive": lambda: sk.AnisotropicSPDE.paper_anisotropic(16),
    "conservative-additive": lambda: sk.AnisotropicSPDE.paper_anisotropic(16, stencil="conservative"),
    "paper-multiplicative-weickert": lambda: sk.AnisotropicSPDE(
        S.Geometric(0.5, 32.0, 2.0), S.AnisotropyRamp(0.05, 0.5, 2.0), S.Geometric(0.05, 1.0, 2.0), 0.3,
        diffusivity="weickert"),
    "conservative-correlated": lambda: sk.AnisotropicSPDE.paper_anisotropic(16, stencil="conservative",
                                                                            correlation_length=2.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("solver", [sk.LinearlyImplicitTheta(), sk.LinearlyImplicitTheta(1.0),
                                    sk.LinearlyImplicitTheta(preconditioner="dct"), sk.AOSEulerMaruyama()],
                         ids=["theta0.5", "theta1", "theta0.5-dct", "aos"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_numba_equals_numpy_over_steps_at_20_times_the_bound(case, solver, dtype, tol):
    spde = CASES[case]()
    u0 = np.random.default_rng(5).uniform(-1, 1, (2, 2, 16, 16)).astype(dtype)
    n = 6
    dt = 20 * spde.stability_bound(0.8, 2.0)
    dW = (math.sqrt(dt) * spde.noise.sample((n,) + u0.shape, np.random.default_rng(6), dtype)).astype(dtype)
    runs = {b: sk.simulate(spde, u0, 0.8, 0.8 + n * dt, dt, solver=solver, brownian=dW, backend=b).final
            for b in ("numpy", "numba")}
    assert runs["numba"].dtype == dtype
    scale = np.abs(runs["numpy"]).max()
    assert np.abs(runs["numba"] - runs["numpy"]).max() <= tol * scale
    assert np.abs(runs["numpy"] - u0).max() > 1e3 * tol * scale


@pytest.mark.parametrize("stencil,method", [("conservative", "cg"), ("paper", "bicgstab")])
def test_numba_blocked_kernels_for_large_planes_equal_numpy(stencil, method, monkeypatch):
    monkeypatch.setattr(JN, "_FUSED_MAX", 10)  # force the row-block kernels on a small grid
    u = _field((2, 1, 37, 41))
    w = JP.frozen_weights(u, np.array([0.7, 1.3]), np.array([2.0, 0.5]), stencil)
    rhs = _field((2, 1, 37, 41), 1)
    x, _ = JP.solve(w, rhs, np.array([0.8, 20.0]), method, rtol=1e-10)
    y, info = JN.solve(w, rhs, np.array([0.8, 20.0]), method, rtol=1e-10)
    assert info["converged"]
    np.testing.assert_allclose(y, x, rtol=0, atol=1e-8 * np.abs(x).max())


def test_numba_steps_do_not_depend_on_the_thread_count():
    import numba

    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u = np.random.default_rng(0).uniform(-1, 1, (3, 1, 16, 16))
    dW = np.random.default_rng(1).standard_normal(u.shape) * 0.1
    outs = []
    old = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            outs.append([s.step(spde, 1.5, u, 0.05, dW, backend="numba")[0]
                         for s in (sk.LinearlyImplicitTheta(), sk.AOSEulerMaruyama())])
    finally:
        numba.set_num_threads(old)
    for a, b in zip(outs[0], outs[-1]):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- stability, accuracy, order


def test_stable_at_50_times_the_bound_where_explicit_em_blows_up():
    """32^2 paper preset, T = 2, camera image: at dt = 51 times the explicit bound the stiff schemes stay
    finite and, on the same Brownian path, keep each sample's final spatial mean within 0.05 and spatial
    std within 20% of explicit EM at a quarter of the bound (the acceptance figures of issue 26, measured
    on 64^2 in docs/validation.md); explicit EM at that dt reaches values in the thousands."""
    spde = sk.AnisotropicSPDE.paper_anisotropic(32)
    u0 = np.repeat(load_image("camera", size=32)[None] * 2.0 - 1.0, 2, axis=0)
    dt = 0.2
    assert dt >= 50 * spde.stability_bound(0.0, 2.0)
    path = sk.BrownianPath(u0.shape, 0.0, 2.0, 1e-3, seed=3)
    ref = sk.simulate(spde, u0, 0.0, 2.0, 1e-3, solver=sk.EulerMaruyama(), brownian=path).final
    for solver in (sk.LinearlyImplicitTheta(), sk.LinearlyImplicitTheta(1.0), sk.AOSEulerMaruyama()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no StabilityWarning for a stiff-stable solver
            final = sk.simulate(spde, u0, 0.0, 2.0, dt, solver=solver, brownian=path).final
        assert np.isfinite(final).all() and np.abs(final).max() < 3.0
        assert np.abs(final.mean(axis=(1, 2, 3)) - ref.mean(axis=(1, 2, 3))).max() < 0.05
        assert np.abs(final.std(axis=(1, 2, 3)) / ref.std(axis=(1, 2, 3)) - 1).max() < 0.2
    with pytest.warns(sk.StabilityWarning):
        em = sk.simulate(spde, u0, 0.0, 2.0, dt, solver=sk.EulerMaruyama(), brownian=path).final
    assert not np.abs(em).max() < 100  # explicit EM: values in the thousands (or no longer finite)


@pytest.mark.parametrize("solver,k0", [(sk.LinearlyImplicitTheta(rtol=1e-10), 1),
                                       (sk.LinearlyImplicitTheta(1.0, rtol=1e-10), 3), (sk.AOSEulerMaruyama(), 3)],
                         ids=["theta0.5", "theta1", "aos"])
def test_strong_order_one_on_the_heat_equation_with_additive_noise(solver, k0):
    """Exact reference on the same path (LinearGaussianPath), 32 paths (the 95% bootstrap interval is
    about +-0.015 wide). theta = 1/2 is in its asymptotic regime already on dt = 2^-1 ... 2^-5 (the two
    coarsest above the explicit bound 1/4); theta = 1 and AOS approach order 1 from below (0.83 and 0.79
    on that ladder), so they are measured on 2^-3 ... 2^-7."""
    problem = LinearHeatEquation(alpha1=1.0, alpha2=1.0)
    res = sk.strong_order(problem, np.zeros((1, 8, 8)), 0.0, 1.0, [2.0**-k for k in range(k0, k0 + 5)], solver,
                          n_paths=32, seed=1, backend="numpy", n_boot=300)
    assert res.order.within(1.0, 0.15), res.order


# ----------------------------------------------------------------------------- API


def test_to_dict_round_trips_and_the_file_rebuilds_the_solver(tmp_path):
    for s in (sk.LinearlyImplicitTheta(), sk.LinearlyImplicitTheta(0.75, rtol=1e-8, maxiter=50, coefficients="left"),
              sk.LinearlyImplicitTheta(preconditioner="dct"), sk.AOSEulerMaruyama(), sk.AOSEulerMaruyama("left")):
        assert solver_from_dict(s.to_dict()) == s
        assert solver_from_dict(s.to_dict()) != sk.EulerMaruyama()
    assert solver_from_dict("theta") == sk.LinearlyImplicitTheta()
    assert solver_from_dict({"solver": "aos"}) == sk.AOSEulerMaruyama()
    assert sk.LinearlyImplicitTheta(1.0) != sk.LinearlyImplicitTheta(0.5)
    assert sk.LinearlyImplicitTheta(preconditioner="dct") != sk.LinearlyImplicitTheta()
    assert "preconditioner" not in sk.LinearlyImplicitTheta().to_dict()  # the default: as before the option
    assert sk.LinearlyImplicitTheta(preconditioner="dct").to_dict()["preconditioner"] == "dct"
    assert repr(sk.LinearlyImplicitTheta(preconditioner="dct")) == \
        "LinearlyImplicitTheta(theta=0.5, rtol=1e-06, maxiter=500, preconditioner='dct')"
    assert repr(sk.LinearlyImplicitTheta()) == "LinearlyImplicitTheta(theta=0.5, rtol=1e-06, maxiter=500)"
    spde = sk.AnisotropicSPDE.paper_anisotropic(8)
    sk.simulate(spde, np.zeros((1, 1, 8, 8)), 0.0, 2.0, 0.25, solver=sk.LinearlyImplicitTheta(1.0), seed=0,
                out=tmp_path / "run.nc")
    assert sk.open_trajectory(tmp_path / "run.nc").solver == sk.LinearlyImplicitTheta(1.0)


@pytest.mark.parametrize("kw,match", [
    ({"theta": 0.4}, r"theta must lie in \[0.5, 1\]"), ({"theta": 1.01}, r"theta must lie in \[0.5, 1\]"),
    ({"theta": float("nan")}, "theta must be a real number"), ({"rtol": 0.0}, r"rtol must lie in \(0, 1\)"),
    ({"rtol": 1.0}, r"rtol must lie in \(0, 1\)"), ({"maxiter": 0}, "maxiter must be an integer >= 1"),
    ({"coefficients": "mid"}, "coefficients must be one of"),
    ({"preconditioner": "ilu"}, "preconditioner must be one of"),
])
def test_bad_parameters_are_one_line_errors(kw, match):
    with pytest.raises(ValueError, match=match) as exc:
        sk.LinearlyImplicitTheta(**kw)
    assert "\n" not in str(exc.value)
    with pytest.raises(TypeError, match="theta must be a real number"):
        sk.LinearlyImplicitTheta(theta="half")
    with pytest.raises(ValueError, match="coefficients must be one of"):
        sk.AOSEulerMaruyama("mid")


def test_problems_without_a_frozen_operator_are_refused():
    ou = sk.problems.OrnsteinUhlenbeck()
    with pytest.raises(TypeError, match="LinearlyImplicitTheta steps an AnisotropicSPDE"):
        sk.LinearlyImplicitTheta().step(ou, 0.0, np.zeros(4), 0.1, np.zeros(4))


def test_an_unconverged_solve_raises_with_the_residual():
    spde = sk.AnisotropicSPDE.paper_anisotropic(16)
    u = np.random.default_rng(0).uniform(-1, 1, (1, 1, 16, 16))
    dW = np.random.default_rng(1).standard_normal(u.shape)
    with pytest.raises(JP.LinearSolveError, match="relative residual .* after maxiter = 1 iterations"):
        sk.LinearlyImplicitTheta(rtol=1e-12, maxiter=1).step(spde, 1.9, u, 0.1, dW, backend="numpy")
    new, ok = sk.LinearlyImplicitTheta().step(spde, 1.9, u[0, 0], 0.1, dW[0, 0])  # (H, W) in, (H, W) out
    assert ok and new.shape == (16, 16)
