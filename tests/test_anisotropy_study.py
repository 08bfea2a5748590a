"""validation/anisotropy_study.py (issue 23) and the modules it imports (anisotropy_rows, anisotropy_stats,
anisotropy_doc): the row definitions, Song & Ermon's sigma_max and its use by row c, the paired statistics, the
sharp-edged data set, status / resume on a fake run folder, the generated document and one-line errors. Nothing
here trains a network."""

import importlib
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate, stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    sys.path.insert(0, str(ROOT / "validation"))
    spec = importlib.util.spec_from_file_location("anisotropy_study", ROOT / "validation" / "anisotropy_study.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["anisotropy_study"] = mod
    spec.loader.exec_module(mod)
    yield mod
    for name in ("anisotropy_study", *PARTS):
        sys.modules.pop(name, None)
    sys.path.remove(str(ROOT / "validation"))


# the modules anisotropy_study.py imports by name (validation/ on sys.path): rows, paired statistics, document
PARTS = ("anisotropy_rows", "anisotropy_stats", "anisotropy_doc")


@pytest.fixture(scope="module")
def rows(study):
    return importlib.import_module("anisotropy_rows")


@pytest.fixture(scope="module")
def paired(study):
    return importlib.import_module("anisotropy_stats")


@pytest.fixture(scope="module")
def doc(study):
    return importlib.import_module("anisotropy_doc")


@pytest.fixture(scope="module")
def full_plan(study, rows, tmp_path_factory):
    prof = study.T1.PROFILES["full"]
    return rows.plan(prof, "full", tmp_path_factory.mktemp("work"))


def _nfe(cfg):
    s = cfg["sampling"]
    return 2 * s["steps"] if s.get("method") == "heun" else s["steps"] * (1 + s["corrector_steps"])


# ------------------------------------------------------------------------------------------ rows
def test_plan_cells_and_seeds(study, rows, full_plan):
    cells = {}
    for t in full_plan:
        cells.setdefault((t.dataset, t.row), []).append(t.seed)
    assert {r for d, r in cells if d == "digits16"} == set(rows.ROWS)
    assert {r for d, r in cells if d == "sharp16"} == {"a", "b", "c", "f"}
    for (ds, row), seeds in cells.items():
        assert seeds == list(range(5 if row in ("a", "b") else 3)), (ds, row)
    assert len({t.name for t in full_plan}) == len(full_plan) == 28 + 16
    assert [t.seed for t in full_plan] == sorted(t.seed for t in full_plan)  # whole pairs first
    quick = rows.plan(study.T1.PROFILES["quick"], "quick", Path("/nonexistent"), ["digits16"], ["a", "b"])
    assert [(t.row, t.seed) for t in quick] == [("a", 0), ("b", 0)]


def test_every_row_has_the_same_budget(rows, full_plan):
    ref = next(t.cfg for t in full_plan if t.row == "a")
    for t in full_plan:
        tr, rtr = t.cfg["train"], ref["train"]
        for key in ("steps", "batch", "lr", "lr_schedule", "lr_final", "warmup", "ema", "grad_clip", "pool"):
            assert tr[key] == rtr[key], (t.name, key)
        assert tr["steps"] == 3600
        assert t.cfg["network"] == ref["network"]
        assert _nfe(t.cfg) == _nfe(ref) == 528
        spde_row = t.row != "f"
        assert tr["time_weight_power"] == (1.0 if spde_row else 0.0), t.name
        assert tr["loss"] == rows.ROWS[t.row][2]
        if spde_row:
            assert t.cfg["sampling"] == ref["sampling"]
            assert t.cfg["process"]["T"] == 2.0 and t.cfg["process"]["dt"] == 1e-3


def test_row_b_is_row_a_without_anisotropy(full_plan):
    import spdekit
    from genmodel.train import build_process

    by = {(t.dataset, t.row, t.seed): t.cfg for t in full_plan}
    for ds in ("digits16", "sharp16"):
        a, b = by[(ds, "a", 0)], by[(ds, "b", 0)]
        assert {k: v for k, v in a.items() if k != "process"} == {k: v for k, v in b.items() if k != "process"}
        pa, pb = build_process(a["process"], 16), build_process(b["process"], 16)
        da, db = pa.spde.to_dict(), pb.spde.to_dict()
        assert {k for k in da if da[k] != db[k]} == {"lambda1"}
        assert db["lambda1"] == {"schedule": "constant", "v": math.inf}
        assert da == spdekit.AnisotropicSPDE.paper_anisotropic(16, 2.0, stencil="paper").to_dict()
        assert pa.to_dict()["solver"] == pb.to_dict()["solver"] and pb.is_linear and not pa.is_linear
    for row, lmin in (("l0.0125", 0.0125), ("l0.05", 0.05)):
        dl = build_process(by[("digits16", row, 0)]["process"], 16).spde.to_dict()
        da = build_process(by[("digits16", "a", 0)]["process"], 16).spde.to_dict()
        assert {k for k in da if da[k] != dl[k]} == {"lambda1"}
        assert dl["lambda1"] == dict(da["lambda1"], lambda_min=lmin)


def test_rows_d_e_f_are_table1s(study, full_plan):
    by = {(t.dataset, t.row): t.cfg for t in full_plan if t.seed == 0}
    for row, method in (("d", "ve_sde"), ("e", "isotropic"), ("f", "flow_matching")):
        t1 = study.T1.make_config(method, study.T1.PROFILES["full"], 16, 0)
        assert by[("digits16", row)]["process"] == t1["process"]
        assert by[("digits16", row)]["train"]["loss"] == t1["train"]["loss"]


def test_extra_evaluations(rows, full_plan):
    settings = {"predictor": "em", "n_samples": 1000, "em_dt_samples": 500}
    for t in full_plan:
        specs = rows.extra_evals(t, settings)
        if t.row in ("a", "b"):
            assert specs == [rows.EvalSpec("em", 2000, 0, 500)]  # Delta = dt: the chain's K steps
        else:
            assert specs == []
        assert rows.main_eval_file(t, settings) == "result.json"
    other = dict(settings, predictor="exponential")
    a = next(t for t in full_plan if t.row == "a")
    f = next(t for t in full_plan if t.row == "f")
    assert rows.extra_evals(a, other)[0] == rows.EvalSpec("exponential", 264, 1, 1000)
    assert rows.main_eval_file(a, other) == "eval_exponential_264x1_n1000.json"
    assert rows.main_eval_file(f, other) == "result.json"  # flow matching keeps its Heun sampler


# ------------------------------------------------------------------------------------------ row c
def test_song_ermon_sigma_max_is_the_largest_pairwise_distance(rows):
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (37, 1, 4, 4))
    x[5] = 3.0  # a far image
    brute = max(np.linalg.norm(x[i] - x[j]) for i in range(len(x)) for j in range(len(x)))
    assert rows.song_ermon_sigma_max(torch.as_tensor(x), chunk=5) == pytest.approx(brute, rel=1e-12)
    assert rows.song_ermon_sigma_max(x) == pytest.approx(brute, rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        rows.song_ermon_sigma_max(x[:1])


def test_digits_sigma_max(rows):
    """The value docs/anisotropy.md states: 17.09 on the 16 px training split (issue 23: 17.1)."""
    assert rows.song_ermon_sigma_max(rows.dataset_images("digits16", "train")) == pytest.approx(17.086, abs=1e-3)


def test_row_c_uses_sigma_max_in_schedule_and_prior(rows, full_plan):
    from genmodel.train import build_process

    for ds in ("digits16", "sharp16"):
        smax = rows.song_ermon_sigma_max(rows.dataset_images(ds, "train"))
        task = next(t for t in full_plan if t.dataset == ds and t.row == "c")
        proc = build_process(task.cfg["process"], 16)
        a2, T = proc.spde.alpha2, proc.T
        assert proc.spde.to_dict()["lambda1"]["v"] == math.inf and proc.spde.to_dict()["alpha1"]["v"] == 0.0
        assert a2(T) / a2(0.0) == pytest.approx(smax / rows.SIGMA_MIN_VE, rel=1e-12)
        var = integrate.quad(lambda t, f=a2: f(t) ** 2, 0, T, limit=200)[0]
        assert var == pytest.approx(smax**2 - rows.SIGMA_MIN_VE**2, rel=1e-8)  # sigma(T)^2 - sigma(0)^2
        assert math.sqrt(proc.sigma2[-1]) == pytest.approx(smax, rel=5e-3)  # the chain's (left Riemann) variance
        prior = rows.row_prior(task)
        assert np.array_equal(prior.mean, np.zeros((1, 16, 16)))
        assert np.allclose(prior.factor, smax * np.eye(256), rtol=1e-12, atol=0)
    assert all(rows.row_prior(t) is None for t in full_plan if t.row != "c")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        rows.ve_alpha2(0.01, 0.001, 2.0)


# ------------------------------------------------------------------------------------------ statistics
def test_paired_differences_hand_example(paired):
    x = {0: 5.0, 1: 7.0, 2: 6.0, 3: 9.0}  # seed 3 has no partner: left out
    y = {0: 4.0, 1: 4.0, 2: 5.0}
    st = paired.paired_differences(x, y)
    assert st["seeds"] == [0, 1, 2] and st["diffs"] == [1.0, 3.0, 1.0]
    assert st["mean"] == pytest.approx(5 / 3) and st["sd"] == pytest.approx(math.sqrt(4 / 3))
    half = 4.302652729911275 * math.sqrt(4 / 3) / math.sqrt(3)  # t_{0.975, 2}
    assert (st["lo"], st["hi"]) == pytest.approx((5 / 3 - half, 5 / 3 + half))
    lo, hi = stats.t.interval(0.95, 2, loc=np.mean([1, 3, 1]), scale=stats.sem([1, 3, 1]))
    assert (st["lo"], st["hi"]) == pytest.approx((lo, hi))
    assert paired.verdict(st, lower_is_better=True) == "inside"


def test_verdicts(paired):
    better = paired.paired_differences({0: 1.0, 1: 2.0, 2: 1.5}, {0: 3.0, 1: 4.1, 2: 3.4})  # x lower by ~2
    assert better["hi"] < 0
    assert paired.verdict(better, lower_is_better=True) == "helps"
    assert paired.verdict(better, lower_is_better=False) == "hurts"
    one = paired.paired_differences({0: 1.0}, {0: 2.0})
    assert one["n"] == 1 and math.isnan(one["lo"]) and paired.verdict(one, True) == "no interval"
    with pytest.raises(ValueError, match="level"):
        paired.paired_differences({0: 1.0}, {0: 2.0}, level=1.5)


# ------------------------------------------------------------------------------------------ sharp data set
def test_sharp_digits(rows):
    from genmodel.data import load_digits

    x, y = rows.sharp_digits(16, "train", return_labels=True)
    h = rows.sharp_digits(16, "test")
    assert x.shape == (1438, 1, 16, 16) and h.shape == (359, 1, 16, 16) and x.dtype == torch.float32
    assert set(torch.unique(x).tolist()) == {-1.0, 1.0}
    assert torch.equal(x, rows.sharp_digits(16, "train"))  # deterministic
    x8, y8 = load_digits(8, "train", return_labels=True)
    assert torch.equal(y, y8)
    assert torch.equal(x[:, :, ::2, ::2], torch.where(x8 > 0, 1.0, -1.0))  # thresholded at mid-grey
    for dy in (0, 1):
        for dx in (0, 1):
            assert torch.equal(x[:, :, dy::2, dx::2], x[:, :, ::2, ::2])  # nearest neighbour: 2x2 blocks
    assert 0.2 < float((x > 0).float().mean()) < 0.5
    with pytest.raises(ValueError, match="image_size"):
        rows.sharp_digits(12)


def test_sharp_data_file_is_what_training_reads(rows, tmp_path):
    from genmodel.data import load_dataset

    path = rows.write_sharp_data(tmp_path, "sharp16")
    mtime = path.stat().st_mtime_ns
    assert rows.write_sharp_data(tmp_path, "sharp16").stat().st_mtime_ns == mtime  # identical: kept
    train, held = load_dataset(rows.data_config("sharp16", tmp_path))
    want = rows.dataset_images("sharp16", "train")
    assert held is None and train.shape == want.shape
    assert sorted(a.tobytes() for a in train.numpy()) == sorted(a.tobytes() for a in want.numpy())


# ------------------------------------------------------------------------------------------ status / resume
def _fake_result(fid, conf=0.9, **kw):
    return {"fid": fid, "kid": fid / 1000, "kid_std": 0.0, "is_analogue": 8.0, "confidence_mean": conf,
            "confident_fraction": conf - 0.1, "train_s_per_1k": 300.0, "sample_s_per_image": 0.5, "nfe": 528,
            "params": 6.9e5, "diverged_fraction": 0.0, "max_abs_before_clamp": 1.0, "wall_seconds": 600.0,
            "commit": "abc1234", "n_samples": 1000, **kw}


def test_status_and_resume_on_fake_runs(study, rows, tmp_path):
    T1 = study.T1
    prof = T1.PROFILES["quick"]
    tasks = rows.plan(prof, "quick", tmp_path, ["sharp16"], ["a", "b", "c"])
    work = tmp_path / "quick"
    settings = {"predictor": "em", "n_samples": 128, "em_dt_samples": 32, "root": str(tmp_path)}
    a, b, c = tasks
    T1.check_run_folder(work / a.name, a.cfg)
    (work / a.name / "result.json").write_text(json.dumps(_fake_result(3.5, wall_seconds=120.0)))
    T1.check_run_folder(work / c.name, c.cfg)
    torch.save({"step": 100}, work / c.name / "last.pt")
    lines = study.status_lines(tasks, work, settings)
    assert lines[0] == f"{a.name}: done: FID 3.50, conf > 0.9 0.800, 2 min | em_2000x0_n32 left"
    assert lines[1] == f"{b.name}: not started | em_2000x0_n32 left"
    assert lines[2] == f"{c.name}: resumable at step 100 of {prof['steps']}"
    assert lines[3] == ("3 runs: 1 done, 1 resumable, 1 not started, 0 made with another config; "
                        "2 extra evaluation(s) left")
    (work / a.name / "eval_em_2000x0_n32.json").write_text(json.dumps(_fake_result(4.0, eval="em_2000x0_n32")))
    assert study.status_lines(tasks, work, settings)[0].endswith("| em_2000x0_n32 done")
    # a finished run (result and extra evaluation) is read back, never redone: no model, no training needed
    out = study.run_task(a, work, settings, classifier=object(), log=lambda *_: None, progress=False)
    assert out["result"]["fid"] == 3.5 and out["evals"]["em_2000x0_n32"]["fid"] == 4.0
    # a folder made by another config stops the run with a message
    T1.check_run_folder(work / b.name, c.cfg)
    with pytest.raises(SystemExit, match="another config"):
        study.run_task(b, work, settings, classifier=object(), log=lambda *_: None, progress=False)
    assert "made with ANOTHER config" in study.status_lines(tasks, work, settings)[1]


def test_relative_workdir_reads_the_runs_of_the_absolute_one(study, rows, tmp_path, monkeypatch, capsys):
    """The runs' configs name the sharp data file by absolute path: a relative --workdir (resolved) must find
    them done, not "made with ANOTHER config" (which tells the user to move the folder away)."""
    T1 = study.T1
    root = tmp_path / "w"
    (task,) = rows.plan(T1.PROFILES["quick"], "quick", root, ["sharp16"], ["c"])
    T1.check_run_folder(root / "quick" / task.name, task.cfg)
    (root / "quick" / task.name / "result.json").write_text(json.dumps(_fake_result(3.5)))
    monkeypatch.chdir(tmp_path)
    assert study.main(["--quick", "--status", "--datasets", "sharp16", "--rows", "c", "--workdir", "w"]) == 0
    out = capsys.readouterr().out
    assert f"{task.name}: done: FID 3.50" in out and "ANOTHER" not in out


def test_document_from_fake_runs(study, rows, paired, doc, tmp_path):
    """Paired table, intervals and the plain statement are generated from the run files."""
    T1 = study.T1
    prof = T1.PROFILES["full"]
    tasks = rows.plan(prof, "full", tmp_path, ["digits16"], ["a", "b", "f"])
    work = tmp_path / "full"
    settings = {"mode": "full", "predictor": "em", "n_samples": 1000, "em_dt_samples": 500, "root": str(tmp_path)}
    fids = {"a": [4.0, 5.0, 4.5, 4.2, 4.8], "b": [6.0, 7.2, 6.1, 6.5, 7.0], "f": [4.1, 5.2, 4.4]}
    for t in tasks:
        if t.seed < len(fids[t.row]) and not (t.row == "a" and t.seed == 4):  # a, seed 4: not finished
            T1.check_run_folder(work / t.name, t.cfg)
            (work / t.name / "result.json").write_text(json.dumps(_fake_result(fids[t.row][t.seed])))
    cells = doc.collect(tasks, work, settings)
    pairs = paired.paired_table(cells, "digits16")
    ab = next(p for p in pairs if (p["x"], p["y"], p["metric"]) == ("a", "b", "fid"))
    assert ab["n"] == 4 and ab["diffs"] == pytest.approx([-2.0, -2.2, -1.6, -2.3]) and ab["verdict"] == "helps"
    af = next(p for p in pairs if (p["x"], p["y"], p["metric"]) == ("a", "f", "fid"))
    assert af["n"] == 3 and af["verdict"] == "inside"
    out = tmp_path / "doc.md"
    doc.write_doc(out, tasks, cells, {}, {}, {}, {}, settings, prof, [["--rows", "a", "b", "f"]], 1.0)
    doc = out.read_text()
    assert "FID: anisotropy helps (a - b = -2.02, 95 % CI [" in doc
    assert "the difference is inside the interval" in doc
    assert "**Not complete.** 1 of 13 runs are not finished: digits16_a_seed4" in doc
    assert "| a | 0 | 4.00 |" in doc and "`python validation/anisotropy_study.py --rows a b f`" in doc


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("argv, words", [
    (["--rows", "z"], ["--rows", "invalid choice"]),
    (["--datasets", "cifar"], ["--datasets", "invalid choice"]),
    (["--predictor", "ode"], ["--predictor", "invalid choice"]),
    (["--jobs", "0"], ["--jobs", ">= 1"]),
    (["--jobs", "two"], ["--jobs", "invalid int"]),
    (["--seeds", "7"], ["--seeds", "0..4"]),
])
def test_bad_arguments_give_one_line(study, argv, words):
    with pytest.raises(SystemExit) as exc:
        study.main(argv)
    msg = str(exc.value.code)
    assert "\n" not in msg and all(w in msg for w in words), msg
