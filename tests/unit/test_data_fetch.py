"""Downloading the ImageNet sample set, against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from xai_checks.cache import TEMP_PREFIX
from xai_checks.data import (
    DEFAULT_BASE_URL,
    ENV_DATA_URL,
    ENV_IMAGENET_SAMPLES,
    DataNotFoundError,
    FetchError,
    class_wnids,
    fetch_dataset,
    fetch_imagenet_samples,
    find_imagenet_samples,
    imagenet_samples_dir,
    open_photoset,
)
from xai_checks.data import fetch as fetch_module
from xai_checks.data.fetch import read_manifest

FILES = ("n01440764_tench.JPEG", "n01877812_wallaby.JPEG", "n03590841_jack-o'-lantern.JPEG")


def photo_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def no_proxy(loopback: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxies cleared (by ``loopback``) and no base URL from the environment."""
    monkeypatch.delenv(ENV_DATA_URL, raising=False)


@pytest.fixture
def served(
    tmp_path: Path, loopback: Callable[..., Any], no_proxy: None
) -> tuple[Any, dict[str, str]]:
    """The server (conftest's LoopbackServer), and the manifest (file -> sha256) of the photos
    it serves."""
    folder = tmp_path / "www" / "data"
    folder.mkdir(parents=True)
    manifest = {}
    for seed, name in enumerate(FILES):
        data = photo_bytes(seed)
        (folder / name).write_bytes(data)
        manifest[name] = sha256(data)
    return loopback(tmp_path / "www", prefix="data/"), manifest


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_download_checks_hashes_and_makes_a_flat_set(
    served: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    server, manifest = served
    dest = tmp_path / "dest"
    seen: list[tuple[int, int]] = []
    report = fetch_imagenet_samples(
        dest,
        base_url=server.url,
        manifest=manifest,
        progress=lambda done, total, name: seen.append((done, total)),
    )
    assert sorted(report.downloaded) == sorted(FILES)
    assert report.present == [] and report.total == 3
    assert server.fetched() == sorted(["n01440764_tench.JPEG", "n01877812_wallaby.JPEG",
                                       "n03590841_jack-o%27-lantern.JPEG"])  # fmt: skip
    for name, digest in manifest.items():
        assert sha256((dest / name).read_bytes()) == digest
    assert seen[-1] == (3, 3)
    assert leftovers(dest) == []
    photos = open_photoset(dest)
    assert photos.layout == "flat"
    assert photos.labels == (0, 104, 607)
    lines = (dest / "MANIFEST.tsv").read_text().splitlines()
    assert lines[0] == "file\twnid\tclass_index\tclass_name\tsha256"
    assert "n01877812_wallaby.JPEG\tn01877812\t104\twallaby\t" + manifest[FILES[1]] in lines


def test_resume_skips_good_files_and_replaces_bad_ones(
    served: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    server, manifest = served
    dest = tmp_path / "dest"
    fetch_imagenet_samples(dest, base_url=server.url, manifest=manifest)
    server.requests.clear()
    (dest / FILES[0]).unlink()
    (dest / FILES[1]).write_bytes(b"damaged")
    report = fetch_imagenet_samples(dest, base_url=server.url, manifest=manifest)
    assert sorted(report.downloaded) == sorted(FILES[:2])
    assert report.present == [FILES[2]]
    assert server.fetched() == sorted(FILES[:2])
    server.requests.clear()
    again = fetch_imagenet_samples(dest, base_url=server.url, manifest=manifest)
    assert again.downloaded == [] and len(again.present) == 3
    assert server.requests == []
    fetch_imagenet_samples(dest, base_url=server.url, manifest=manifest, overwrite=True)
    assert len(server.requests) == 3


def test_tampered_file_is_an_error_and_leaves_nothing(
    served: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    server, manifest = served
    (server.root / "data" / FILES[1]).write_bytes(photo_bytes(99))  # not what the manifest says
    dest = tmp_path / "dest"
    with pytest.raises(FetchError) as info:
        fetch_imagenet_samples(dest, base_url=server.url, manifest=manifest)
    assert FILES[1] in str(info.value)
    assert set(info.value.failures) == {FILES[1]}
    assert "sha256" in info.value.failures[FILES[1]]
    assert not (dest / FILES[1]).exists()
    assert (dest / FILES[0]).is_file() and (dest / FILES[2]).is_file()
    assert not (dest / "MANIFEST.tsv").exists(), "an incomplete copy must not look complete"
    assert leftovers(dest) == []


def test_a_stale_bad_file_is_removed_even_if_the_download_fails(
    served: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    server, manifest = served
    (server.root / "data" / FILES[0]).unlink()  # the server answers 404
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / FILES[0]).write_bytes(b"old and wrong")
    with pytest.raises(FetchError, match="HTTP 404") as info:
        fetch_imagenet_samples(dest, base_url=server.url, manifest=manifest)
    assert list(info.value.failures) == [FILES[0]]
    assert not (dest / FILES[0]).exists()


def test_unreachable_server(tmp_path: Path, loopback: Callable[..., Any], no_proxy: None) -> None:
    closed = loopback(tmp_path)
    url = closed.url
    closed.close()
    with pytest.raises(FetchError, match="cannot download"):
        fetch_imagenet_samples(tmp_path / "d", base_url=url, manifest={FILES[0]: "0" * 64})


def test_base_url_from_the_environment_and_manifest_from_a_file(
    served: tuple[Any, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, manifest = served
    table = tmp_path / "m.tsv"
    rows = ["file\tsha256"] + [f"{name}\t{digest}" for name, digest in manifest.items()]
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert read_manifest(table) == manifest
    monkeypatch.setenv(ENV_DATA_URL, server.url.rstrip("/"))
    report = fetch_imagenet_samples(tmp_path / "dest", manifest=table)
    assert len(report.downloaded) == 3
    assert len(server.requests) == 3


def test_default_destination_is_the_cache(
    served: tuple[Any, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, manifest = served
    monkeypatch.setenv("XAI_CHECKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(ENV_IMAGENET_SAMPLES, raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared here
    report = fetch_imagenet_samples(base_url=server.url, manifest=manifest)
    assert report.dest == tmp_path / "cache" / "imagenet-samples"
    assert find_imagenet_samples() == report.dest
    assert open_photoset("imagenet-samples").labels == (0, 104, 607)


def test_bad_manifests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain names"):
        fetch_imagenet_samples(tmp_path, manifest={"../evil.JPEG": "0" * 64})
    bad = tmp_path / "bad.tsv"
    bad.write_text("file\tsha256\nx.JPEG\tnot-a-hash\n", encoding="utf-8")
    with pytest.raises(ValueError, match="sha256"):
        read_manifest(bad)


def test_packaged_manifest() -> None:
    manifest = read_manifest()
    assert len(manifest) == 1000
    assert manifest["n01877812_wallaby.JPEG"] == (
        "de2a78e8d4542a31b5aba818393eb014d0ac2929a7824c48c1473dfeb083d741"
    )
    wnids = [name[:9] for name in sorted(manifest)]
    assert wnids == list(class_wnids()), "one photo per class, in index order"
    assert DEFAULT_BASE_URL.startswith("https://raw.githubusercontent.com/EliSchwartz/")


def test_fetch_dataset_dispatch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(
        fetch_module,
        "fetch_imagenet_samples",
        lambda dest, **kw: calls.append((dest, kw["base_url"], kw["overwrite"])),
    )
    fetch_dataset("imagenet-samples", dest=tmp_path, base_url="http://127.0.0.1:9/")
    assert calls == [(tmp_path, "http://127.0.0.1:9/", False)]
    with pytest.raises(ValueError, match="nothing to fetch"):
        fetch_dataset("embedded")
    with pytest.raises(ValueError, match="imagenet-samples"):
        fetch_dataset("coco")


# ----------------------------------------------------------------------------- finding the set


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env var, an empty cache, and a working folder without ../shared."""
    monkeypatch.delenv(ENV_IMAGENET_SAMPLES, raising=False)
    monkeypatch.setenv("XAI_CHECKS_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "project"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def test_missing_set_says_how_to_fetch_it(nowhere: Path) -> None:
    assert find_imagenet_samples() is None
    with pytest.raises(DataNotFoundError, match="xai-checks data fetch imagenet-samples"):
        imagenet_samples_dir()
    with pytest.raises(FileNotFoundError, match="xai-checks data fetch imagenet-samples"):
        open_photoset("imagenet-samples")


def test_lookup_order(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = nowhere / "shared" / "data" / "imagenet-samples"
    shared.mkdir(parents=True)
    (shared / FILES[0]).write_bytes(photo_bytes(0))
    assert find_imagenet_samples() == Path.cwd().parent / "shared/data/imagenet-samples"
    cached = nowhere / "cache" / "imagenet-samples"
    cached.mkdir(parents=True)
    (cached / FILES[1]).write_bytes(photo_bytes(1))
    assert find_imagenet_samples() != cached, "an incomplete cached copy is not used"
    (cached / "MANIFEST.tsv").write_text(
        f"file\twnid\tclass_index\tclass_name\tsha256\n{FILES[1]}\tn01877812\t104\twallaby\tx\n"
    )
    assert find_imagenet_samples() == cached
    assert open_photoset("imagenet-samples").labels == (104,)
    mine = nowhere / "mine"
    mine.mkdir()
    (mine / FILES[2]).write_bytes(photo_bytes(2))
    monkeypatch.setenv(ENV_IMAGENET_SAMPLES, str(mine))
    assert find_imagenet_samples() == mine
    photos = open_photoset("imagenet-samples")
    assert photos.name == "imagenet-samples" and photos.labels == (607,)
    monkeypatch.setenv(ENV_IMAGENET_SAMPLES, str(nowhere / "absent"))
    with pytest.raises(DataNotFoundError, match=ENV_IMAGENET_SAMPLES):
        find_imagenet_samples()


def test_env_names_are_stable() -> None:
    assert ENV_DATA_URL == "XAI_CHECKS_DATA_URL"
    assert ENV_IMAGENET_SAMPLES == "XAI_CHECKS_IMAGENET_SAMPLES"


def test_dest_that_is_a_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cache path that is a file: a clear error from ``xai-checks data fetch``, no traceback."""
    from xai_checks.cli import main

    afile = tmp_path / "photos.txt"
    afile.write_text("mine")
    assert main(["data", "fetch", "imagenet-samples", "--dest", str(afile)]) == 1
    err = capsys.readouterr().err
    assert f"{afile} is a file, not a folder" in err and "Traceback" not in err
    assert afile.read_text() == "mine"
    with pytest.raises(FetchError, match="is a file, not a folder"):
        fetch_imagenet_samples(afile / "sub", manifest={FILES[0]: "0" * 64})


def test_partial_files_of_a_killed_fetch_are_removed(
    served: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    """A fetch killed mid-file leaves its temporary file; the next fetch (holding the same
    lock) removes it."""
    server, manifest = served
    dest = tmp_path / "dest"
    dest.mkdir()
    stale = dest / f"{TEMP_PREFIX}{FILES[0]}.k1ll3d.part"
    stale.write_bytes(b"half a photo")
    fetch_imagenet_samples(dest, base_url=server.url, manifest=manifest)
    assert not stale.exists() and leftovers(dest) == []
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == sorted(
        [*FILES, "MANIFEST.tsv"]
    )
