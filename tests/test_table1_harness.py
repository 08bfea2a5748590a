"""validation/table1.py end to end at a toy budget: two methods in two worker processes (after this
process has used OpenMP, as in the full test suite: the workers must be spawned, not forked), the
generated table, and a rerun that reads the finished runs instead of training again."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table1():
    sys.path.insert(0, str(ROOT / "validation"))  # spawned workers import it by name
    spec = importlib.util.spec_from_file_location("table1", ROOT / "validation" / "table1.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["table1"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.path.remove(str(ROOT / "validation"))
    sys.modules.pop("table1", None)


def test_table1_runs_in_parallel_and_resumes(table1, tmp_path, capsys):

    from spdekit.backends import philox

    philox.standard_normal((4, 64), (1, 2), 0, 0)  # numba's OpenMP threading layer is now in use
    args = ["--quick", "--steps", "2", "--n-samples", "8", "--methods", "ve_sde", "flow_matching",
            "--workdir", str(tmp_path / "work"), "--out", str(tmp_path / "t1.md"), "--figdir", str(tmp_path)]
    assert table1.main(args + ["--jobs", "2"]) == 0
    doc = (tmp_path / "t1.md").read_text()
    assert "VE-SDE" in doc and "Flow matching" in doc and "SMOKE-LEVEL" in doc
    raw = json.loads((tmp_path / "t1.json").read_text())
    assert set(raw["rows"]) == {"ve_sde_16px", "flow_matching_16px"}
    for (row,) in raw["rows"].values():
        assert row["train_steps"] == 2 and row["n_samples"] == 8 and row["fid"] == row["fid"]  # not NaN
        # the network trains and samples on the GPU when torch sees one; the table says where
        assert row["timed_on"] == (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")
    assert "| network on |" in doc
    capsys.readouterr()
    assert table1.main(args) == 0  # everything finished before: read back, nothing retrained
    assert capsys.readouterr().out.count("done before") == 2
    with pytest.raises(SystemExit, match="--jobs"):
        table1.main(args + ["--jobs", "0"])
    # a finished run is reused only for the config that made it
    with pytest.raises(SystemExit, match="another config .*train.steps"):
        table1.main([a if a != "2" else "3" for a in args])


def test_run_folder_check(table1, tmp_path):
    table1.PROFILE.clear()
    table1.PROFILE.update(table1.PROFILES["quick"])
    path = table1.make_config("anisotropic", table1.PROFILE, 16, 0)
    transition = table1.make_config("anisotropic_transition", table1.PROFILE, 16, 0)
    assert path["train"]["loss"] == "path" and transition["train"]["loss"] == "transition"
    run = tmp_path / "anisotropic_16px_seed0"
    table1.check_run_folder(run, path)  # a new folder: writes config.json
    table1.check_run_folder(run, path)  # the same config: fine
    with pytest.raises(SystemExit, match="train.loss"):
        table1.check_run_folder(run, transition)
    old = tmp_path / "old"
    old.mkdir()
    (old / "last.pt").write_bytes(b"")
    with pytest.raises(SystemExit, match="no config.json"):
        table1.check_run_folder(old, path)


def test_ablation_cells_one_loss(table1):
    """One factor at a time around the paper's preset; every variant is trained with the same loss
    (transition), also the linear lambda1_min = inf one ("auto" would give it the exact loss) and the
    correlated-noise ones (the path loss refuses l > 0)."""
    from genmodel.train import build_process

    cells = table1.ABLATION_CELLS
    assert len(cells) == len(set(cells)) == 4 and table1.ABLATION_CENTRE in cells
    assert not any(ell in table1.WITHDRAWN_ELL for _, ell in cells)  # withdrawn variants are not run again
    assert {c for c in cells if c[1] == 0} == {(lm, 0) for lm in table1.ABLATION_LAMBDA1_MIN}
    assert {c for c in cells if c[0] == table1.ABLATION_CENTRE[0]} == {
        (table1.ABLATION_CENTRE[0], ell) for ell in table1.ABLATION_ELL}
    prof = table1.PROFILES["full"]
    paper = build_process({"preset": "paper_anisotropic", "stencil": "paper", "T": 2.0, "dt": 1e-3}, 16)
    for lmin, ell in cells:
        cfg = table1.make_config("anisotropic", prof, 16, 0, table1.ablation_process(lmin, ell, 16, prof["T"]))
        assert cfg["train"]["loss"] == "transition"
        proc = build_process(cfg["process"], 16)
        assert proc.spde.correlation_length == ell
        assert proc.is_linear == (lmin == float("inf"))
        if (lmin, ell) == table1.ABLATION_CENTRE:  # the centre IS the paper's anisotropic preset
            assert proc.spde.to_dict() == paper.spde.to_dict()


def test_samples_per_size(table1):
    full, quick = table1.PROFILES["full"], table1.PROFILES["quick"]
    assert table1.samples_for(full, 16) == 1000 and table1.samples_for(full, 32) == 500
    assert table1.samples_for(quick, 16) == table1.samples_for(quick, 32) == quick["n_samples"]


def test_doc_per_seed_and_missing(table1, tmp_path):
    """The generated table shows each seed's FID / confidence / commit and says what was not run."""
    import argparse

    prof = dict(table1.PROFILES["full"], sizes=[16], seeds=[0, 1],
                missing="not run into it: sizes [32]")
    res = [{"fid": f, "kid": 0.1, "is_analogue": 7.0, "confidence_mean": 0.9, "confident_fraction": c,
            "train_s_per_1k": 300.0, "sample_s_per_image": 0.5, "nfe": 528, "params": 6.9e5,
            "diverged_fraction": 0.0, "max_abs_before_clamp": 1.0, "wall_seconds": 60.0, "commit": k}
           for f, c, k in ((4.25, 0.75, "abc1234"), (6.5, 0.6, "def5678 (with uncommitted changes)"))]
    args = argparse.Namespace(quick=False, ablation=False, note="")
    out = tmp_path / "t.md"
    table1.write_doc(out, {("ve_sde", 16): res}, {}, args, prof, 1.0, {}, {"ve_sde": "VE-SDE"})
    doc = out.read_text()
    assert "| VE-SDE | 16 | 4.25 / 6.50 | 0.750 / 0.600 | abc1234 / def5678* |" in doc
    assert "**Not complete.** not run into it: sizes [32]" in doc
    assert "5.38 ± 1.59" in doc  # mean and sample std of the two FIDs


def test_status_lists_every_run(table1, tmp_path):
    import torch

    prof = table1.PROFILES["quick"]
    cfgs = {s: table1.make_config("ve_sde", prof, 16, s) for s in range(4)}
    tasks = [("ve_sde", 16, s, f"run{s}", c) for s, c in cfgs.items()]
    table1.check_run_folder(tmp_path / "run0", cfgs[0])
    (tmp_path / "run0" / "result.json").write_text(
        json.dumps({"fid": 3.5, "confident_fraction": 0.75, "wall_seconds": 120.0}))
    table1.check_run_folder(tmp_path / "run1", cfgs[1])
    torch.save({"step": 100}, tmp_path / "run1" / "last.pt")
    table1.check_run_folder(tmp_path / "run2", cfgs[3])  # a folder made by another config
    lines = table1.run_status(tasks, tmp_path)
    assert lines == ["run0: done: FID 3.50, conf > 0.9 0.750, 2 min",
                     f"run1: resumable at step 100 of {prof['steps']}",
                     "run2: made with ANOTHER config (the run would stop; move the folder away)",
                     "run3: not started"]


def test_commit_can_be_named_for_a_copy_of_the_tree(table1, monkeypatch):
    """A copy of the tree shipped to another machine may carry no or a stale .git: TABLE1_COMMIT wins."""
    monkeypatch.delenv("TABLE1_COMMIT", raising=False)
    here = table1.commit()
    assert here != "unknown"  # this checkout has .git
    monkeypatch.setenv("TABLE1_COMMIT", "abc1234")
    assert table1.commit() == "abc1234"


def test_keep_rows_of_other_sizes(table1, tmp_path):
    """--keep-rows: the rows of sizes a command does not run come from the earlier raw JSON, each size with
    the command that made it; the document lists both commands; a broken JSON is refused by name."""
    import argparse

    row = {"fid": 4.25, "kid": 0.1, "is_analogue": 7.0, "confidence_mean": 0.9, "confident_fraction": 0.75,
           "train_s_per_1k": 300.0, "sample_s_per_image": 0.5, "nfe": 528, "params": 6.9e5,
           "diverged_fraction": 0.0, "max_abs_before_clamp": 1.0, "wall_seconds": 60.0, "commit": "abc1234"}
    raw = tmp_path / "t.json"
    old_cmd = ["validation/table1.py", "--sizes", "16"]
    raw.write_text(json.dumps({"rows": {"ve_sde_16px": [row], "ve_sde_32px": [dict(row, fid=99.0)]},
                               "reference": {"16": {"fid": 0.5}, "32": {"fid": 0.7}}, "command": old_cmd}))
    figdir = tmp_path / "fig"
    figdir.mkdir()
    (figdir / "full_ve_sde_16px.png").write_bytes(b"png")
    rows, refs, grids, cmds = table1.kept_rows(raw, [32], figdir, "full")
    assert list(rows) == [("ve_sde", 16)] and rows[("ve_sde", 16)][0]["fid"] == 4.25  # the 32 px row is redone
    assert refs == {16: {"fid": 0.5}} and cmds == {16: old_cmd}
    assert grids == {("ve_sde", 16): figdir / "full_ve_sde_16px.png"}
    assert table1.kept_rows(tmp_path / "absent.json", [32], figdir, "full") == ({}, {}, {}, {})

    new_cmd = ["validation/table1.py", "--sizes", "32", "--keep-rows"]
    prof = dict(table1.PROFILES["full"], sizes=[16, 32], seeds=[0], missing="")
    out = tmp_path / "t.md"
    table1.write_doc(out, {("ve_sde", 16): [row], ("ve_sde", 32): [dict(row, fid=5.5)]}, {},
                     argparse.Namespace(quick=False, ablation=False, note=""), prof, 1.0, {},
                     {"ve_sde": "VE-SDE"}, {16: old_cmd, 32: new_cmd})
    doc = out.read_text()
    assert "* command (16 px rows): `python validation/table1.py --sizes 16`" in doc
    assert "* command (32 px rows): `python validation/table1.py --sizes 32 --keep-rows`" in doc
    assert "| VE-SDE | 16 | 4.25 |" in doc and "| VE-SDE | 32 | 5.50 |" in doc

    raw.write_text("{not json")
    with pytest.raises(SystemExit, match="t.json"):
        table1.kept_rows(raw, [32], figdir, "full")
    raw.write_text(json.dumps({"rows": {"ve_sde_16": [row]}}))  # a row name without its size
    with pytest.raises(SystemExit, match="not a raw table"):
        table1.kept_rows(raw, [32], figdir, "full")


def test_runs_name_their_machine(table1):
    """The 'runs made on' line counts runs per machine; a run without the field is not credited to this one."""
    here = table1.machine()
    assert table1._run_machines({("a", 16): [{"machine": here}]}) == []
    line = table1._run_machines({("a", 16): [{}, {}], ("a", 32): [{"machine": "GPU box"}, {"machine": here}]})[0]
    assert "machine not recorded (a run from before runs stored it) (2 runs)" in line
    assert "GPU box (1 run)" in line and f"{here} (1 run)" in line


def _row(**kw):
    return dict({"fid": 4.25, "kid": 0.1, "is_analogue": 7.0, "confidence_mean": 0.9, "confident_fraction": 0.75,
                 "train_s_per_1k": 300.0, "sample_s_per_image": 0.5, "nfe": 528, "params": 6.9e5,
                 "diverged_fraction": 0.0, "max_abs_before_clamp": 1.0, "wall_seconds": 60.0, "commit": "abc1234"},
                **kw)


def test_withdrawn_ablation_rows_leave_the_table(table1, tmp_path):
    """The correlated-noise ablation rows (l = 1, 2) are not in the table; a paragraph names them and gives the
    reference-only check's numbers; the l = 0 rows stay."""
    import argparse

    keep, gone = table1.ablation_key(0.025, 0), table1.ablation_key(0.025, 2)
    assert not table1.withdrawn_row(keep) and table1.withdrawn_row(gone)
    assert not table1.withdrawn_row("isotropic")
    prof = dict(table1.PROFILES["full"], sizes=[16], seeds=[0], missing="")
    labels = {keep: table1.ablation_label(0.025, 0), gone: table1.ablation_label(0.025, 2)}
    out = tmp_path / "a.md"
    check = {0: {"outside": 0.022, "max_abs": 3.48, "n": 500}, 2: {"outside": 0.257, "max_abs": 15.6, "n": 500}}
    table1.write_doc(out, {(keep, 16): [_row()], (gone, 16): [_row(fid=21.06)]}, {},
                     argparse.Namespace(quick=False, ablation=True, note=""), prof, 1.0, {}, labels,
                     reference_check=check)
    doc = out.read_text()
    table = [line for line in doc.splitlines() if line.startswith("| ")]
    assert any("l = 0 (the paper's preset)" in line for line in table)
    assert not any("l = 2" in line for line in table) and "21.06" not in doc
    assert "**Withdrawn: anisotropic, lambda1_min = 0.025, l = 2.**" in doc  # one row: no separator
    assert "l = 2: 25.7 % of the pixels outside" in doc and "500 samples" in doc
    assert "What this table can and cannot say" not in doc  # that paragraph is the main table's


def test_main_table_points_to_the_study(table1, tmp_path):
    import argparse

    out = tmp_path / "t.md"
    table1.write_doc(out, {("isotropic", 16): [_row()]}, {}, argparse.Namespace(quick=False, ablation=False, note=""),
                     dict(table1.PROFILES["full"], sizes=[16], seeds=[0], missing=""), 1.0, {},
                     {"isotropic": table1.ALL_METHODS["isotropic"]["label"]})
    doc = out.read_text()
    assert "| Ours (isotropic): heat of eq. 17 (alpha2 -> 0.5, conservative stencil, exact loss) | 16 | 4.25 |" in doc
    assert "[docs/anisotropy.md](anisotropy.md)" in doc


def test_rewrite_from_the_raw_json(table1, tmp_path):
    """--rewrite: the document again from its raw JSON, nothing trained; the runs' commits and the commands' notes
    are kept, the labels are today's."""
    raw = tmp_path / "t.json"
    cmd = ["validation/table1.py", "--sizes", "16", "--note", "two jobs side by side"]
    raw.write_text(json.dumps({"profile": dict(table1.PROFILES["full"], sizes=[16], seeds=[0], missing=""),
                               "rows": {"isotropic_16px": [_row(commit="0408ae5")]},
                               "reference": {"16": {"fid": 1.57, "kid": -0.0971, "is_analogue": 9.84,
                                                    "confidence_mean": 0.996, "confident_fraction": 0.992}},
                               "commands": {"16": cmd}}))
    out = tmp_path / "t.md"
    assert table1.main(["--rewrite", "--out", str(out), "--figdir", str(tmp_path / "fig"),
                        "--workdir", str(tmp_path / "runs")]) == 0
    doc = out.read_text()
    assert "Ours (isotropic): heat of eq. 17" in doc and "runs made at commit(s) 0408ae5" in doc
    assert "two jobs side by side" in doc and "rewritten from t.json" in doc
    assert "| held-out vs training digits (floor) | 16 | 1.57 |" in doc
    assert json.loads(raw.read_text())["rewritten"]["commit"] == table1.COMMIT_AT_START != ""
    assert not (tmp_path / "runs").exists()  # nothing was run
    with pytest.raises(SystemExit, match="no raw table"):
        table1.main(["--rewrite", "--out", str(tmp_path / "none.md"), "--workdir", str(tmp_path / "runs")])
