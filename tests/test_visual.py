import json, os

import numpy as np
import pytest
import torch
from PIL import Image

from rrg_tutorial import visual as V


@pytest.fixture(scope="module")
def lite():
    return V.VisualExtractor("efficientnet_lite0", pretrained=False, seed=0).eval()


def _tiny_set(root, n=3, px=40):
    "An R2Gen IU layout with `n` train studies and one val study of two `px`-pixel grey films each."
    rng = np.random.default_rng(0)
    ann = {"train": [], "val": [], "test": []}
    for k in range(n + 1):
        sid, split = f"S{k}", "train" if k < n else "val"
        (root / "images" / sid).mkdir(parents=True)
        for v in (0, 1):
            Image.fromarray(rng.integers(0, 255, (px, px), dtype=np.uint8)).save(root / "images" / sid / f"{v}.png")
        ann[split].append({"id": sid, "report": f"the heart is normal {k} .", "split": split,
                           "image_path": [f"{sid}/0.png", f"{sid}/1.png"]})
    (root / "annotation.json").write_text(json.dumps(ann))
    return root / "annotation.json", root / "images"


def test_contract_shapes(lite):
    x = torch.randn(2, 2, 3, 64, 64)
    with torch.inference_mode():
        tok, pool = lite(x)
        g = lite.grids(x)
    assert lite.out_channels == 1280 and lite.grid == (7, 7)
    assert g.shape == (2, 2, 1280, 2, 2) and tok.shape == (2, 8, 1280) and pool.shape == (2, 1280)
    with torch.inference_mode():
        tok1, pool1 = lite(x[:, 0])                       # (B, 3, H, W): one view
    assert tok1.shape == (2, 4, 1280) and pool1.shape == (2, 1280)


def test_two_paths_agree_exactly(lite):
    x = torch.randn(2, 2, 3, 64, 64)
    with torch.inference_mode():
        a = lite(x)
        b = V.tokens_and_pooled(lite.grids(x))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_pooled_is_mean_of_views_and_token_order():
    g = torch.randn(3, 2, 5, 4, 6)
    tok, pool = V.tokens_and_pooled(g)
    assert torch.allclose(pool, (g[:, 0].mean((2, 3)) + g[:, 1].mean((2, 3))) / 2, atol=1e-6)
    assert torch.equal(tok[:, 24 + 6 * 2 + 5], g[:, 1, :, 2, 5])   # view 1, row 2, column 5


def test_vit_tokens_back_on_grid():
    ve = V.VisualExtractor("vit_b_32", pretrained=False, seed=0).eval()
    vit = ve.trunk.vit
    vit.encoder.layers, vit.encoder.ln, vit.encoder.dropout = torch.nn.Sequential(), torch.nn.Identity(), torch.nn.Identity()
    vit.encoder.pos_embedding.data.zero_()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(ve.grids(x)[:, 0], vit.conv_proj(x))
    assert ve.out_channels == 768 and ve.grid == (7, 7)


def test_seeded_random_init_is_reproducible_and_leaves_rng_alone():
    state = torch.random.get_rng_state()
    a = V.VisualExtractor(pretrained=False, seed=3)
    b = V.VisualExtractor(pretrained=False, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_errors(lite, monkeypatch, tmp_path):
    two = V.VisualExtractor(pretrained=False, n_views=2, seed=0)
    with pytest.raises(ValueError, match="view"): two(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="3 channels"): lite(torch.randn(1, 2, 1, 32, 32))
    with pytest.raises(ValueError, match="channels, expected 1280"): V.tokens_and_pooled(torch.randn(1, 2, 1024, 7, 7), channels=1280)
    with pytest.raises(ValueError, match="unknown encoder"): V.VisualExtractor("densenet-121")
    with pytest.raises(ValueError, match=r"\(B, V, C, h, w\)"): V.tokens_and_pooled(torch.randn(2, 1280, 7, 7))


def test_missing_torchvision_weights_error(monkeypatch, tmp_path):
    import urllib.error
    import torch.hub
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    def offline(*a, **k): raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="pretrained=False") as e:
        V.VisualExtractor("densenet121", pretrained=True)
    assert "densenet121-a639ec97.pth" in str(e.value) and str(tmp_path) in str(e.value)


def test_real_lite0_weights():
    ve = V.VisualExtractor("efficientnet_lite0", pretrained=True)
    sd = torch.load(V.lite0_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(ve.trunk.net._conv_stem.weight, sd["_conv_stem.weight"])
    assert ve.weights_id.startswith("imagenet-") and ve.weights_id == V.weights_identity("efficientnet_lite0", True)
    assert ve.weights_id != V.weights_identity("efficientnet_lite0", False, seed=0)


def test_cache_hit_miss_invalidation(tmp_path):
    ann, img = _tiny_set(tmp_path / "set")
    kw = dict(pretrained=False, image_size=64, cache=tmp_path / "cache", progress=False)
    a = V.split_features(ann, img, "train", **kw)
    assert a["feats"].shape == (3, 2, 1280, 2, 2) and a["ids"] == ["S0", "S1", "S2"] and a["n_computed"] == 6
    b = V.split_features(ann, img, "train", **kw)
    assert b["n_computed"] == 0 and torch.equal(a["feats"], b["feats"])
    assert torch.equal(V.split_features(ann, img, "train", **{**kw, "cache": False})["feats"], a["feats"])
    Image.fromarray(np.full((40, 40), 200, np.uint8)).save(img / "S1" / "1.png")   # the file changes
    c = V.split_features(ann, img, "train", **kw)
    assert c["n_computed"] == 1
    assert torch.equal(c["feats"][[0, 2]], a["feats"][[0, 2]]) and torch.equal(c["feats"][1, 0], a["feats"][1, 0])
    assert not torch.equal(c["feats"][1, 1], a["feats"][1, 1])
    other = V.split_features(ann, img, "train", **{**kw, "seed": 1})             # another random init: its own key
    assert other["key"] != a["key"] and other["n_computed"] == 6


def test_cache_writes_atomically(tmp_path, monkeypatch):
    cache = V.FeatureCache(tmp_path)
    g = torch.randn(4, 2, 2)
    cache.put("ab" * 32, g[1:3])                                   # a view: stored alone, not the whole storage
    assert torch.equal(cache.get("ab" * 32), g[1:3])
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["ab" * 32 + ".pt"]
    def crash(obj, f): open(f, "wb").write(b"half"); raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt): cache.put("cd" * 32, g)
    assert cache.get("cd" * 32) is None                           # nothing at the final name
    monkeypatch.undo()
    cache.path("ef" * 32).parent.mkdir(parents=True)
    cache.path("ef" * 32).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"): assert cache.get("ef" * 32) is None


def test_unreadable_and_missing_images(tmp_path):
    ann, img = _tiny_set(tmp_path / "set")
    (img / "S0" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*S0"):
        V.split_features(ann, img, "train", pretrained=False, image_size=64, cache=False, progress=False)
    os.remove(img / "S0" / "0.png")
    with pytest.raises(FileNotFoundError, match="S0"):
        V.split_features(ann, img, "train", pretrained=False, image_size=64, cache=False, progress=False)
    with pytest.raises(ValueError, match="fewer than n_views=3"):
        V.split_features(ann, img, "val", pretrained=False, n_views=3, cache=False, progress=False)


def test_feature_dataset_and_loader(tmp_path):
    ann, img = _tiny_set(tmp_path / "set")
    tok = lambda text: [1] + [2 + len(w) for w in text.split()] + [0]
    feats = V.split_features(ann, img, "train", pretrained=False, image_size=64, cache=tmp_path / "c", progress=False)
    perm = {"ids": feats["ids"][::-1], "feats": feats["feats"].flip(0)}   # any order of ids works
    ds = V.R2GenFeatureDataset(ann, img, "train", tok, feats=perm)
    assert len(ds) == 3 and torch.equal(ds[0]["feats"], feats["feats"][0]) and ds[0]["id"] == "S0"
    b = next(iter(V.feature_loader(ds, batch_size=3, shuffle=False)))
    assert set(b) == {"id", "feats", "ids", "mask", "report"}
    assert b["feats"].shape == (3, 2, 1280, 2, 2) and b["ids"].shape == b["mask"].shape == (3, 8)
    ds2 = V.R2GenFeatureDataset(ann, img, "train", tok, pretrained=False, image_size=64, cache=tmp_path / "c", progress=False)
    assert torch.equal(ds2[2]["feats"], feats["feats"][2])
    with pytest.raises(KeyError, match="lack 1 ids"):
        V.R2GenFeatureDataset(ann, img, "train", tok, feats={"ids": feats["ids"][:2], "feats": feats["feats"][:2]})
    with pytest.raises(ValueError, match="1 view"):
        V.R2GenFeatureDataset(ann, img, "train", tok, feats={"ids": feats["ids"], "feats": feats["feats"][:, :1]})


def test_split_features_subset_of_ids(tmp_path):
    ann, img = _tiny_set(tmp_path / "set")
    kw = dict(pretrained=False, image_size=64, cache=tmp_path / "cache", progress=False)
    full = V.split_features(ann, img, "train", **kw)
    part = V.split_features(ann, img, "train", ids=["S2", "S0"], **kw)
    assert part["ids"] == ["S2", "S0"] and part["n_computed"] == 0
    assert torch.equal(part["feats"], full["feats"][[2, 0]])
    with pytest.raises(KeyError, match="no item 'S3' in split 'train'"):
        V.split_features(ann, img, "train", ids=["S3"], **kw)


def test_a_grid_does_not_depend_on_the_images_sharing_its_pass(tmp_path):
    "Every pass has FEATURE_PASS images: an image's cached features are the same whatever was missing with it."
    import numpy as np
    from PIL import Image
    from rrg_tutorial.visual import FEATURE_PASS, extract_grids
    rng = np.random.default_rng(1)
    paths = []
    for k in range(FEATURE_PASS + 3):                                 # two passes, the second padded
        paths.append(tmp_path / f"{k}.png")
        Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(paths[-1])
    together, n = extract_grids(paths, pretrained=False, progress=False)
    assert n == len(paths) and together.shape[0] == len(paths)
    for part in (paths[FEATURE_PASS - 1:FEATURE_PASS + 1], paths[5:6]):
        alone, _ = extract_grids(part, pretrained=False, progress=False, batch_size=1)
        ix = [paths.index(p) for p in part]
        assert torch.equal(together[ix], alone)
