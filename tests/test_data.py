"Tests of rrg_tutorial.data on small hand-made fixtures in R2Gen's IU X-Ray and MIMIC-CXR layouts."
import json, re, warnings
from pathlib import Path
import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from rrg_tutorial.data import (R2GenDataset, r2gen_collate, r2gen_loader, r2gen_transform, swap_laterality, LAYOUTS)


class Tok:
    "A tokenizer stand-in: encode -> [0] + ids + [0]."
    pad_id = 0
    def __init__(self): self.w = {}
    def encode(self, text):
        return [0] + [self.w.setdefault(t, len(self.w) + 1) for t in re.findall(r"[a-z]+|\.", text.lower())] + [0]


def fixture(root: Path, layout: str, n=6, size=(40, 48)):
    rng = np.random.default_rng(0)
    ann = {s: [] for s in ("train", "val", "test")}
    for k in range(n):
        split = ("train", "val", "test")[k % 3]
        if layout == "iu_xray":
            sid = f"CXR{k}"; paths = [f"{sid}/0.png", f"{sid}/1.png"]
            item = {"id": sid, "report": f"Left effusion. Right lung clear {'x ' * k}.", "image_path": paths, "split": split}
        else:
            sid = f"s{k}"; paths = [f"p10/p{k}/{sid}/i{k}.jpg"]
            item = {"id": f"i{k}", "study_id": sid, "subject_id": str(k), "report": "heart normal.", "image_path": paths, "split": split}
        for p in paths:
            (root / "images" / p).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(root / "images" / p)
        ann[split].append(item)
    (root / "annotation.json").write_text(json.dumps(ann))
    return root


@pytest.mark.parametrize("layout", ["iu_xray", "mimic_cxr"])
def test_layouts_shapes_and_padding(tmp_path, layout):
    root = fixture(tmp_path, layout)
    ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), layout=layout)
    assert len(ds) == 2
    item = ds[0]
    assert item["image"].shape == ((2, 3, 224, 224) if layout == "iu_xray" else (3, 224, 224))
    b = next(iter(r2gen_loader(ds, batch_size=2, shuffle=False)))
    assert b["images"].shape[0] == 2 and b["ids"].shape == b["mask"].shape
    lengths = [len(ds[i]["ids"]) for i in range(2)]
    assert b["mask"].sum(1).tolist() == lengths
    assert (b["ids"][b["mask"] == 0] == 0).all() and b["n_dropped"] == 0


def test_collate_pads_with_pad_id_and_stacks_labels():
    mk = lambda n, v: {"id": str(n), "image": torch.zeros(3, 4, 4), "ids": torch.arange(1, n + 1), "mask": torch.ones(n, dtype=torch.long),
                       "report": "r", "labels": torch.tensor([v, 1 - v])}
    c = r2gen_collate([mk(2, 0.0), mk(4, 1.0)], pad_id=9)
    assert c["ids"].tolist() == [[1, 2, 9, 9], [1, 2, 3, 4]] and c["mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert c["labels"].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match="unreadable"): r2gen_collate([None, None])


def test_tokenizer_interfaces_and_truncation(tmp_path):
    root = fixture(tmp_path, "iu_xray")
    tok = Tok()
    a = R2GenDataset(root / "annotation.json", root / "images", "train", tok, max_seq_length=None)
    b = R2GenDataset(root / "annotation.json", root / "images", "train", tok.encode, max_seq_length=5)   # a plain callable
    assert b[1]["ids"].tolist() == a[1]["ids"].tolist()[:5] and b[1]["mask"].tolist() == [1] * 5
    with pytest.raises(TypeError, match="encode"): R2GenDataset(root / "annotation.json", root / "images", "train", 42)[0]


def test_missing_image_names_file_and_skip_bad_counts(tmp_path):
    root = fixture(tmp_path, "iu_xray", n=9)
    (root / "images" / "CXR3" / "1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"CXR3/1\.png"):
        R2GenDataset(root / "annotation.json", root / "images", "train", Tok())
    with pytest.warns(UserWarning, match="skipped 1 of 3"):
        ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), skip_bad=True)
    assert len(ds) == 2 and ds.skipped[0][0] == "CXR3"


def test_unreadable_image(tmp_path):
    root = fixture(tmp_path, "iu_xray", n=9)
    (root / "images" / "CXR3" / "0.png").write_bytes(b"garbage")
    ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok())
    with pytest.raises(ValueError, match=r"CXR3/0\.png"): ds[1]
    ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), skip_bad=True)
    with pytest.warns(UserWarning, match="CXR3"):
        b = r2gen_collate([ds[i] for i in range(len(ds))])
    assert ds.n_unreadable == 1 and b["n_dropped"] == 1 and b["id"] == ["CXR0", "CXR6"]


def test_malformed_annotation_names_file(tmp_path):
    root = fixture(tmp_path, "iu_xray")
    p = root / "annotation.json"
    p.write_text("[1, 2")
    with pytest.raises(ValueError, match="annotation.json"): R2GenDataset(p, root / "images", "train", Tok())
    p.write_text(json.dumps({"train": [{"id": "a", "image_path": ["a/0.png"]}]}))
    with pytest.raises(ValueError, match="report"): R2GenDataset(p, root / "images", "train", Tok())
    p.write_text(json.dumps({"train": [{"id": "a", "report": "x", "image_path": ["CXR0/0.png"]}]}))
    with pytest.raises(FileNotFoundError, match="needs 2"): R2GenDataset(p, root / "images", "train", Tok())
    with pytest.raises(ValueError, match="layout"): R2GenDataset(p, root / "images", "train", Tok(), layout="chexpert")
    with pytest.raises(FileNotFoundError, match="image folder"): R2GenDataset(p, root / "nope", "train", Tok())


def test_hflip_flips_views_and_swaps_laterality(tmp_path):
    root = fixture(tmp_path, "iu_xray")
    ev = r2gen_transform(train=False)
    plain = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), transform=ev)
    flip = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), transform=ev, hflip=1.0)
    a, b = plain[0], flip[0]
    assert b["report"] == swap_laterality(a["report"]) and b["report"].startswith("Right effusion. Left lung")
    assert torch.allclose(b["image"], a["image"].flip(-1), atol=1e-5)


def test_transforms_and_swap():
    img = Image.fromarray(np.zeros((300, 260), np.uint8)).convert("RGB")
    assert r2gen_transform(True)(img).shape == r2gen_transform(False)(img).shape == (3, 224, 224)
    assert swap_laterality("LEFT and Right, leftward left.") == "RIGHT and Left, leftward right."
    with pytest.raises(ValueError): r2gen_transform(True, size=300, resize=256)


def test_labels_csv(tmp_path):
    root = fixture(tmp_path, "iu_xray")
    pd.DataFrame({"id": [f"CXR{k}" for k in range(6)], "split": "x", "A": [1.0, 0, np.nan, 0, 1, 0], "inserted": ""}).to_csv(root / "labels.csv", index=False)
    ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), labels=root / "labels.csv")
    assert ds.label_names == ["A"] and ds[1]["labels"].tolist() == [0.0]
    with pytest.raises(KeyError, match="lack"):
        R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), labels=pd.DataFrame({"id": ["CXR0"], "A": [1.0]}))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    from rrg_tutorial.data import load_radiograph
    a16 = (np.linspace(0, 1, 40 * 48).reshape(40, 48) * 65535).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "x16.png")
    Image.fromarray((a16 // 257).astype(np.uint8)).save(tmp_path / "x8.png")
    with Image.open(tmp_path / "x16.png") as im: assert np.asarray(im.convert("RGB")).mean() > 250   # PIL clips
    got, ref = np.asarray(load_radiograph(tmp_path / "x16.png")), np.asarray(load_radiograph(tmp_path / "x8.png"))
    assert got.shape == (40, 48, 3) and np.abs(got.astype(int) - ref).max() <= 1
    root = fixture(tmp_path / "f", "iu_xray")
    for p in (root / "images").glob("*/*.png"): Image.fromarray(a16).save(p)     # the whole folder in 16 bits
    ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), transform=lambda im: torch.from_numpy(np.asarray(im).copy()))
    assert np.abs(ds[0]["image"][0].numpy().astype(int) - ref).max() <= 1


def test_skip_bad_survives_decompression_bomb(tmp_path, monkeypatch):
    root = fixture(tmp_path, "iu_xray")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)                      # 40 x 48 > 2 x 100: a "bomb"
    with pytest.raises(ValueError, match=r"CXR0/0.png.*DecompressionBombError"):
        R2GenDataset(root / "annotation.json", root / "images", "train", Tok())[0]
    ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), skip_bad=True)
    with pytest.warns(UserWarning, match=r"CXR0/0.png"): assert ds[0] is None
    assert ds.n_unreadable == 1


@pytest.mark.parametrize("bad", [None, 5, ["a list"]])
def test_report_that_is_not_text(tmp_path, bad):
    root = fixture(tmp_path, "iu_xray")
    ann = json.loads((root / "annotation.json").read_text())
    ann["train"][1]["report"] = bad
    (root / "annotation.json").write_text(json.dumps(ann))
    with pytest.raises(ValueError, match=r"annotation.json: item 1 of 'train' \(id 'CXR3'\) has a report of type"):
        R2GenDataset(root / "annotation.json", root / "images", "train", Tok())
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        ds = R2GenDataset(root / "annotation.json", root / "images", "train", Tok(), skip_bad=True)
    assert len(ds) == 1 and ds[0]["report"].startswith("Left effusion") and len(ds.skipped) == 1
    assert R2GenDataset(root / "annotation.json", root / "images", "val", Tok(), skip_bad=True).skipped == []


def test_dataset_argument_errors(tmp_path):
    root = fixture(tmp_path, "iu_xray")
    a, i = root / "annotation.json", root / "images"
    for n in (0, 1, 2.5, True):
        with pytest.raises(ValueError, match="max_seq_length must be an int >= 2"): R2GenDataset(a, i, "train", Tok(), max_seq_length=n)
    with pytest.raises(ValueError, match="split must be"): R2GenDataset(a, i, "validation", Tok())
    with pytest.raises(ValueError, match="labels must have an 'id' column"): R2GenDataset(a, i, "train", Tok(), labels=pd.DataFrame({"x": [1]}))
    lab = pd.DataFrame({"id": ["CXR0", "CXR3"], "Cardiomegaly": ["yes", "no"]})
    with pytest.raises(ValueError, match="labels for .* must be numbers"): R2GenDataset(a, i, "train", Tok(), labels=lab)
    with pytest.raises(TypeError, match="tokenizer must have encode"): R2GenDataset(a, i, "train", 5)[0]
