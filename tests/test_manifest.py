"""Manifests and class folders, local and on a real GCS emulator."""

import io
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from landslide import storage
from landslide.data import manifest as manifest_lib
from landslide.data.manifest import parse_label
from landslide.errors import DataError


def _png(path, colour=(10, 200, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


def test_parse_label_study_convention():
    assert parse_label("landslide") == 1 and parse_label("Non_Landslide") == 0 and parse_label("non-landslide") == 0
    assert parse_label("0") == 1 and parse_label("1") == 0 and parse_label(0.0) == 1  # study: 0 = landslide
    assert parse_label("ambiguous") is None and parse_label(None) is None and parse_label(float("nan")) is None


@pytest.mark.parametrize("names", [("landslide", "non_landslide"), ("0", "1")])
def test_class_folders(tmp_path, names):
    for i in range(3):
        _png(tmp_path / names[0] / f"a{i}.png")
    for i in range(2):
        _png(tmp_path / names[1] / f"b{i}.jpg")
    (tmp_path / names[1] / "notes.txt").write_text("ignored")
    m = manifest_lib.load(str(tmp_path))
    assert m.class_counts() == {"landslide": 3, "non_landslide": 2}


def test_folder_without_classes(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="no class folders found"):
        manifest_lib.load(str(tmp_path))


def test_csv_manifest_relative_paths_unknown_labels_missing_files(tmp_path):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    _png(tmp_path / "img" / "c.png")
    pd.DataFrame({"path": ["img/a.png", "img/b.png", "img/c.png", "img/gone.png"],
                  "label": ["landslide", "non_landslide", "ambiguous", "landslide"],
                  "group": ["g1", "g1", "g2", "g2"], "lat": [1, 1, 2, 2], "lon": [3, 3, 4, 4],
                  "landslide_size": ["small", None, None, "large"]}).to_csv(tmp_path / "m.csv", index=False)
    m = manifest_lib.load(str(tmp_path / "m.csv"))
    assert len(m) == 2
    assert m.skipped == {"label:ambiguous": 1, "missing_file": 1}
    assert any("gone.png" in e["path"] and e["reason"] == "file not found" for e in m.skipped_examples)
    assert m.frame["uri"].iloc[0] == str(tmp_path / "img" / "a.png")
    assert "landslide_size" in m.tag_columns


def test_parquet_manifest(tmp_path):
    _png(tmp_path / "a.png")
    pd.DataFrame({"path": ["a.png"], "label": ["1"], "split": ["Validation"]}).to_parquet(tmp_path / "m.parquet")
    m = manifest_lib.load(str(tmp_path / "m.parquet"))
    assert m.frame["target"].tolist() == [0] and m.frame["split"].tolist() == ["val"]


def test_manifest_errors(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        manifest_lib.load(str(tmp_path / "nope.csv"))
    (tmp_path / "m.csv").write_text("file,class\na.png,landslide\n")
    with pytest.raises(DataError, match=r"lacks required column\(s\) \['path', 'label'\]"):
        manifest_lib.load(str(tmp_path / "m.csv"))
    _png(tmp_path / "a.png")
    (tmp_path / "s.csv").write_text("path,label,split\na.png,landslide,holdout\n")
    with pytest.raises(DataError, match="unknown value"):
        manifest_lib.load(str(tmp_path / "s.csv"))
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(DataError, match="data folder not found|no class folders"):
        manifest_lib.load(str(tmp_path / "m.json"))


def test_gs_manifest_and_images_through_emulator(gcs_emulator):
    from landslide.data.images import read_image

    _, bucket = gcs_emulator
    base = f"gs://{bucket}/chips"
    buf = io.BytesIO()
    Image.fromarray(np.full((12, 12, 3), 99, np.uint8)).save(buf, format="PNG")
    storage.write_bytes(f"{base}/landslide/a.png", buf.getvalue())
    storage.write_bytes(f"{base}/non_landslide/b.png", buf.getvalue())
    storage.write_text(f"{base}/m.csv", "path,label\nlandslide/a.png,landslide\nnon_landslide/b.png,0\n")
    m = manifest_lib.load(f"{base}/m.csv")
    assert m.frame["uri"].tolist() == [f"{base}/landslide/a.png", f"{base}/non_landslide/b.png"]
    assert read_image(m.frame["uri"][0]).shape == (12, 12, 3)
    folder = manifest_lib.load(base)
    assert folder.class_counts() == {"landslide": 1, "non_landslide": 1}
    with pytest.raises(DataError, match="not found"):
        manifest_lib.load(f"gs://{bucket}/nothing/m.csv")


def test_merge_manifests_of_two_regions(tmp_path, capsys):
    from landslide.cli import main

    for name in ("a", "b", "c"):
        _png(tmp_path / "uav" / "img" / f"{name}.png")
        _png(tmp_path / "uav" / "masks" / f"{name}.png", (0, 0, 0))
    pd.DataFrame({"path": ["img/a.png", "img/b.png", "img/c.png"], "mask_path": ["masks/a.png", "masks/b.png", ""],
                  "label": ["landslide", "non_landslide", "ambiguous"], "group": ["g1", "g1", "g2"],
                  "region": ["", "valley", None]}).to_csv(tmp_path / "uav" / "labels.csv", index=False)
    for cls in ("landslide", "non_landslide"):  # a class-folder data set of another region
        _png(tmp_path / "sat" / cls / "x.png")
    out = tmp_path / "merged" / "all.csv"
    merged = manifest_lib.merge([str(tmp_path / "uav" / "labels.csv"), str(tmp_path / "sat")], str(out),
                                regions=["site", "plateau"], sensors=["uav", "satellite"], gsd_m=[0.2, 0.8])
    frame = merged.frame
    assert len(merged) == 4 and merged.regions() == ["plateau", "site", "valley"]
    # the source's own region is kept, blanks are filled; sensor and GSD per source
    assert frame["region"].tolist() == ["site", "valley", "plateau", "plateau"]
    assert frame["sensor"].tolist() == ["uav", "uav", "satellite", "satellite"]
    assert frame["gsd_m"].tolist() == [0.2, 0.2, 0.8, 0.8]
    # groups never merge across sources; a source without groups gets one per chip
    assert frame["group"].tolist()[:2] == ["site:g1", "valley:g1"] and frame["group"].nunique() == 4
    # paths are relative to the merged manifest, mask paths too, and every file is found again
    written = pd.read_csv(out)
    assert written["path"][0] == os.path.join("..", "uav", "img", "a.png")
    assert written["mask_path"][0] == os.path.join("..", "uav", "masks", "a.png")
    assert not merged.skipped and all(os.path.exists(u) for u in frame["uri"])
    assert merged.summary()["regions"] == {"plateau": {"samples": 2, "landslide": 1},
                                           "site": {"samples": 1, "landslide": 1},
                                           "valley": {"samples": 1, "landslide": 0}}
    # the command line says the same in one line per region
    assert main(["data", "merge", str(tmp_path / "uav" / "labels.csv"), str(tmp_path / "sat"), "--out",
                 str(tmp_path / "cli.parquet"), "--region", "site", "plateau", "--gsd-m", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "4 chips from 2 manifests" in printed and "region plateau: 2 chips, 1 landslide" in printed
    assert manifest_lib.load(str(tmp_path / "cli.parquet")).frame["gsd_m"].tolist() == [0.5] * 4

    # ambiguous chips kept on request (footprint models): labelled so in the file, landslide chips when loaded
    # with ambiguous=True, skipped otherwise
    assert main(["data", "merge", str(tmp_path / "uav" / "labels.csv"), "--out", str(tmp_path / "amb.csv"),
                 "--keep-ambiguous"]) == 0
    assert "3 chips from 1 manifests" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "amb.csv")["label"].tolist() == ["landslide", "non_landslide", "ambiguous"]
    kept = manifest_lib.load(str(tmp_path / "amb.csv"), ambiguous=True).frame
    assert kept["target"].tolist() == [1, 0, 1] and kept["ambiguous"].tolist() == [False, False, True]
    assert manifest_lib.load(str(tmp_path / "amb.csv")).skipped == {"label:ambiguous": 1}
    folders = manifest_lib.merge([str(tmp_path / "sat")], str(tmp_path / "folders.csv"), keep_ambiguous=True)
    assert len(folders) == 2  # class folders hold no ambiguous chips

    with pytest.raises(DataError, match="appear in more than one source"):
        manifest_lib.merge([str(tmp_path / "sat"), str(tmp_path / "sat")], str(tmp_path / "twice.csv"))
    with pytest.raises(DataError, match="--region: give one value for all 2 manifests or one per manifest"):
        manifest_lib.merge([str(tmp_path / "sat"), str(tmp_path / "uav" / "labels.csv")], str(tmp_path / "x.csv"),
                           regions=["a", "b", "c"])
    with pytest.raises(DataError, match="write the merged manifest as .csv or .parquet"):
        manifest_lib.merge([str(tmp_path / "sat")], str(tmp_path / "x.json"))


def test_region_columns_are_checked(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("path,label,gsd_m\na.png,landslide,-0.3\n")
    with pytest.raises(DataError, match="'gsd_m' must hold positive ground sampling distances.*-0.3"):
        manifest_lib.load(str(tmp_path / "m.csv"))
    (tmp_path / "m.csv").write_text("path,label,gsd_m,region\na.png,landslide,half a metre, north \n")
    with pytest.raises(DataError, match="half a metre"):
        manifest_lib.load(str(tmp_path / "m.csv"))
    (tmp_path / "m.csv").write_text("path,label,gsd_m,region,sensor\na.png,landslide,, north ,\n")
    m = manifest_lib.load(str(tmp_path / "m.csv"))
    assert m.regions() == ["north"] and m.frame["gsd_m"].isna().all() and m.frame["sensor"].isna().all()
    assert "region" not in m.tag_columns and "gsd_m" not in m.tag_columns
