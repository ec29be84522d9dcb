"""Loss metrics, the phase-change window, the loss bump and the PCA of per-token losses
(minih/interp/metrics/losses.py, phase.py, pca.py), on synthetic curves with known answers.

Oracles: hand-set loss arrays (the ICL score is a difference of two known entries);
np.gradient is exact on a function linear in log position; a logistic step whose
10%-90% span is c -+ w ln 9 in closed form; a convex curve with a known inflection;
a loss trajectory that moves along u, then along v, turning at a known snapshot.
"""
import numpy as np
import pytest

import minih
from minih.interp import metrics as M


def test_icl_indices_and_score():
    assert M.icl_indices(512) == (50, 500)                       # the paper's indices
    assert M.icl_indices(256) == (25, 250)                       # exact halves of the paper's
    # rounding: 50/512*100 = 9.77 -> 10, 500/512*100 = 97.66 -> 98; 50/512*32 = 3.125 -> 3
    assert M.icl_indices(100) == (10, 98)
    assert M.icl_indices(32) == (3, 31)
    # kept within [1, n - 1]: 500/512*20 = 19.53 -> 20 = n, capped at 19; 50/512*12 = 1.17 -> 1
    assert M.icl_indices(20) == (2, 19)
    assert M.icl_indices(12) == (1, 11)
    S, N, T = 2, 3, 512
    losses = np.zeros((S, N, T - 1))
    losses[:, :, 499] = [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]       # 1-based index 500
    losses[:, :, 49] = [[4.0, 4.0, 4.0], [-1.0, -1.0, 2.0]]      # 1-based index 50
    np.testing.assert_allclose(M.icl_score(losses), [2.0 - 4.0, 0.0 - 0.0])
    assert M.icl_score(losses[0], early=50, late=500) == pytest.approx(-2.0)
    with pytest.raises(ValueError, match="1 <= early < late"):
        M.icl_score(losses, early=500, late=50)
    with pytest.raises(ValueError, match="at least 12 tokens"):
        M.icl_score(np.zeros((2, 5)))


def test_loss_by_position_is_the_mean_over_examples():
    rng = np.random.default_rng(0)
    L = rng.random((4, 5, 7))
    np.testing.assert_allclose(M.loss_by_position(L), L.mean(axis=1))


def test_log_position_derivative_exact_on_linear_in_log():
    i = np.arange(1, 64)
    L = np.stack([3.0 - 0.5 * np.log(i), 2.0 + 0.0 * i])         # slopes -0.5 and 0
    # np.gradient's differences are exact for a function linear in its coordinate
    np.testing.assert_allclose(M.loss_log_position_derivative(L), [[-0.5] * 63, [0.0] * 63], atol=1e-12)


def logistic_icl(lx, c=6.0, w=0.1, depth=1.5):
    return -depth / (1 + np.exp(-(lx - c) / w))


def test_phase_change_window_on_a_logistic_step():
    tokens = np.logspace(4, 8, 401)                               # 0.01-decade spacing
    icl = logistic_icl(np.log10(tokens))
    win = M.phase_change_window(tokens, icl, width=0.0)
    # unsmoothed logistic: 10% and 90% of the change at c -+ w ln 9. The curve's ends are
    # at 20 widths (not exactly 0 and -1.5: ~2e-9 off), and linear interpolation between
    # 0.01-decade snapshots errs by < 1e-3 decades
    assert np.log10(win.start_tokens) == pytest.approx(6.0 - 0.1 * np.log(9), abs=1e-3)
    assert np.log10(win.end_tokens) == pytest.approx(6.0 + 0.1 * np.log(9), abs=1e-3)
    assert win.total_change == pytest.approx(-1.5, abs=1e-6)
    assert tokens[win.start_index] >= win.start_tokens > tokens[win.start_index - 1]
    # smoothing widens the step symmetrically: the window still centres on c
    smooth = M.phase_change_window(tokens, icl, width=0.1)
    centre = (np.log10(smooth.start_tokens) + np.log10(smooth.end_tokens)) / 2
    assert centre == pytest.approx(6.0, abs=0.01)
    assert np.log10(smooth.end_tokens / smooth.start_tokens) > 2 * 0.1 * np.log(9)


def test_phase_change_window_bad_input():
    with pytest.raises(ValueError, match="must be > 0"):
        M.phase_change_window([0, 10, 100], [0.0, -1.0, -2.0])
    with pytest.raises(ValueError, match="does not change"):
        M.phase_change_window([1, 10, 100], [1.0, 1.0, 1.0])


def test_loss_bump_is_the_most_concave_point_inside_the_window():
    lx = np.linspace(3, 8, 301)                                   # 1/60-decade snapshots
    c, w, depth = 6.0, 0.15, 0.8
    # convex background (falls ever more slowly) plus a logistic drop centred at c,
    # and an early wiggle at 10^3.5 where the curve is also briefly concave (noise)
    background = 2.0 + np.exp(-(lx - 3))
    wiggle = 0.02 * np.sin((lx - 3.3) * 2 * np.pi / 0.4) * (np.abs(lx - 3.5) < 0.2)
    loss = background + logistic_icl(lx, c=c, w=w, depth=depth) + wiggle

    def d2(x):   # the analytic second derivative against log10 tokens, without the wiggle
        sig = 1 / (1 + np.exp(-(x - c) / w))
        return np.exp(-(x - 3)) - depth / w ** 2 * sig * (1 - sig) * (1 - 2 * sig)

    window = (10 ** (c - 1), 10 ** (c + 1))
    fine = np.linspace(c - 1, c + 1, 200_001)
    oracle = fine[np.argmin(d2(fine))]                            # the most concave point
    bump = np.log10(M.loss_bump(10 ** lx, loss, window, width=0.0))
    # np.gradient twice on a 1/60-decade grid, and the snapshot grid itself: a few steps
    assert bump == pytest.approx(oracle, abs=0.05)
    assert bump < c                                               # before the drop's centre
    # a PhaseWindow works the same as a (start, end) pair
    win = M.phase_change_window(10 ** lx, logistic_icl(lx, c=c, w=w, depth=depth), width=0.0)
    inside = M.loss_bump(10 ** lx, loss, win, width=0.0)
    assert win.start_tokens <= inside <= win.end_tokens
    # the control: the convex background alone has no bump in the same window
    assert np.isnan(M.loss_bump(10 ** lx, background, window, width=0.0))
    # and the early wiggle is concave too, but outside the window it is never chosen
    assert M.loss_bump(10 ** lx, background + wiggle, (10 ** 3.3, 10 ** 3.7), width=0.0) > 0
    assert np.isnan(M.loss_bump(10 ** lx, loss, None))


def test_steepest_fall_of_a_logistic_step():
    lx = np.linspace(3, 8, 301)
    curve = logistic_icl(lx, c=6.0, w=0.1, depth=1.5)               # falls fastest at 10^6
    k, rate = M.steepest_fall(10 ** lx, curve, width=0.0)
    assert lx[k] <= 6.0 <= lx[k + 1]
    # oracle: the logistic's slope at its centre, depth / (4 w) nats per decade; the rule
    # takes the secant over one 1/60-decade step, within 1% of it for a width of 0.1
    assert rate == pytest.approx(1.5 / (4 * 0.1), rel=1e-2)
    k, rate = M.steepest_fall(10 ** lx, -curve, width=0.0)          # a rising curve never falls
    assert rate < 0


def test_curve_departure_where_the_gap_to_the_control_opens():
    lx = np.linspace(3, 8, 301)
    c, w, depth = 6.0, 0.15, 0.8
    control = 2.0 + np.exp(-(lx - 3))                             # the 1-layer model
    model = control + logistic_icl(lx, c=c, w=w, depth=depth)      # leaves it near c
    at = np.log10(M.curve_departure(10 ** lx, model, control, width=0.0))
    # gap = depth * sigmoid((x - c) / w): 10% of its largest value at c + w ln(1/9),
    # interpolated between 1/60-decade snapshots
    assert at == pytest.approx(c + w * np.log(1 / 9), abs=2e-3)
    # an early, small lead (a deeper model learns the easy statistics a bit faster) that
    # shrinks again is not the departure: the widening at c is
    early = 0.15 * np.exp(-0.5 * ((lx - 4.0) / 0.3) ** 2)          # a bump of 0.15 nats at 10^4
    at_early = np.log10(M.curve_departure(10 ** lx, model - early, control, width=0.0))
    valley = lx[np.argmin(np.where(lx < c, early + depth / (1 + np.exp(-(lx - c) / w)), np.inf))]
    assert valley < at_early < c                                   # after the valley, before c
    assert at_early == pytest.approx(c + w * np.log(1 / 9), abs=0.05)
    # a model that never leaves the control has no departure
    assert np.isnan(M.curve_departure(10 ** lx, control, control, width=0.0))
    assert np.isnan(M.curve_departure(10 ** lx, control + 0.1, control))   # always worse
    with pytest.raises(ValueError, match="level"):
        M.curve_departure(10 ** lx, model, control, level=1.5)


def turning_losses(S=21, turn=10, N=30, seed=0):
    """[S, N, T-1] losses whose chosen-position vector moves along u, then along v."""
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal(N), rng.standard_normal(N)
    v -= (v @ u) / (u @ u) * u                                     # orthogonal directions
    base = 3 + rng.random(N)
    s = np.arange(S)[:, None]
    rows = base - 0.1 * np.minimum(s, turn) * u - 0.1 * np.maximum(s - turn, 0) * v  # [S,N]
    losses = np.tile(rows[:, :, None], (1, 1, 5))                 # same at every position
    return losses


def test_pca_recovers_a_two_direction_trajectory():
    losses = turning_losses()
    pca = M.loss_pca(losses, n_components=2, seed=0)
    traj = pca.trajectories[0]                                    # [S,2]
    # the data has rank 2 after centring: two components explain all of it
    assert pca.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-12)
    # reconstruct the centred data from the trajectory and components
    X = losses[:, np.arange(30), pca.positions]
    np.testing.assert_allclose(traj @ pca.components + pca.mean, X, atol=1e-10)
    assert M.turning_point(traj) == 10
    assert np.all(pca.components.sum(axis=1) >= 0)                # the sign convention


def test_pca_stacks_several_models_on_shared_positions():
    a, b = turning_losses(seed=0), turning_losses(S=15, turn=5, seed=0)[:, :, :] + 0.5
    pca = M.loss_pca([a, b], n_components=2, seed=3)
    assert [t.shape for t in pca.trajectories] == [(21, 2), (15, 2)]
    single = M.loss_pca(a, n_components=2, positions=pca.positions)
    assert np.array_equal(single.positions, pca.positions)
    with pytest.raises(ValueError, match="share the evaluation set"):
        M.loss_pca([a, a[:, :10]])


def test_per_token_losses_is_the_model_function():
    cfg = minih.ModelConfig.preset("tiny", dtype="float64")
    params = minih.init_params(cfg, 0)
    tokens = np.random.default_rng(0).integers(0, cfg.d_vocab, size=(2, cfg.n_ctx))
    np.testing.assert_array_equal(M.per_token_losses(params, tokens, cfg),
                                  minih.per_token_losses(params, tokens, cfg))


def test_inputs_unchanged():
    losses = turning_losses()
    tokens = np.logspace(3, 7, 21)
    icl = logistic_icl(np.log10(tokens), c=5.0, w=0.3)
    keep = [losses.copy(), tokens.copy(), icl.copy()]
    for arr in (losses, tokens, icl):
        arr.setflags(write=False)
    M.loss_by_position(losses); M.icl_score(losses[..., :4].repeat(4, axis=-1))
    M.loss_log_position_derivative(M.loss_by_position(losses))
    M.phase_change_window(tokens, icl); M.loss_bump(tokens, -icl, (tokens[1], tokens[-2])); M.smooth_log(tokens, icl, 0.0)
    M.loss_pca([losses, losses]); M.turning_point(M.loss_pca(losses).trajectories[0])
    for before, after in zip(keep, (losses, tokens, icl)):
        np.testing.assert_array_equal(before, after)


def test_knee_point_finds_the_corner_despite_late_jitter():
    # oracle: a path along x for 10 steps, then along y, then 30 snapshots of tiny
    # jitter around its end (a settled model); the corner is snapshot 10
    rng = np.random.default_rng(0)
    leg1 = np.c_[np.arange(11.0), np.zeros(11)]
    leg2 = np.c_[np.full(10, 10.0), np.arange(1.0, 11.0)]
    tail = np.array([10.0, 10.0]) + 0.05 * rng.normal(size=(30, 2))
    traj = np.concatenate([leg1, leg2, tail])
    frozen = traj.copy()
    assert M.knee_point(traj) == 10
    assert np.array_equal(traj, frozen)
    assert M.knee_point(np.zeros((4, 2))) == 0
    with pytest.raises(ValueError, match="S >= 3"):
        M.knee_point(np.zeros((2, 2)))
