"""Decoding from file bytes on the model's device (``xai_checks.data.device_decode``).

On the CPU the same byte-batch path runs with ``device="cpu"`` (``decode_jpeg`` of a list of
byte tensors, then the geometry and normalisation on tensors); the CUDA test, marked ``cuda``,
runs nvJPEG on the GPU machine.

The tolerance against the PIL path, in 8-bit levels of the photo (model input times std times
255): both decoders here are libjpeg-turbo with the same IDCT, so the decoded pixels agree; the
resize differs, PIL's antialiased bilinear filter against torch's on a uint8 tensor, which
rounds its fixed-point sums differently by at most one level. Measured on 64 shared photos: at
most 1 level anywhere, 0.17% of values off by one, 5 of 64 photos bit-identical. The bound:
every value within 1 level, at most 1% of values off. A float32 resample rounded to uint8 (what
torchvision does where it does not pick torch's uint8 kernel) is off by one on about 16% of
values, so the bound tells the two kernels apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from xai_checks.data import device_decode as dd
from xai_checks.data import open_photoset
from xai_checks.data.device_decode import DeviceDecoder, PhotoBytes, collate_encoded
from xai_checks.data.loading import load_image, make_transform
from xai_checks.data.samples import Sample, make_sample

LEVEL = 1 / 255


@pytest.fixture(scope="module")
def photos(shared_photos: Path) -> list[Sample]:
    return list(open_photoset(shared_photos, limit=32, seed=0))


def levels(a: torch.Tensor, b: torch.Tensor, std: list[float]) -> torch.Tensor:
    """|a - b| of model inputs in 8-bit levels of the photo."""
    scale = torch.tensor(std).view(-1, 1, 1) / LEVEL
    return (a.float().cpu() - b.float().cpu()).abs() * scale


def decode_all(samples, transform, device="cpu", **kwargs):
    data = PhotoBytes(samples, transform)
    decoder = DeviceDecoder(transform, torch.device(device))
    out = decoder(collate_encoded([data[i] for i in range(len(samples))]), **kwargs)
    return out, decoder


def sample(path: Path, label: int = 0, box=None) -> Sample:
    return make_sample(path, label, box)


def assert_within_one_level(photos: list[Sample]) -> None:
    transform = make_transform("standard")
    (indices, images, _, failed), decoder = decode_all(photos, transform)
    assert failed == [] and indices == list(range(len(photos)))
    assert decoder.counts.device == len(photos) and not decoder.counts.cpu
    std = list(transform.normalize.std)
    off = 0
    for i, s in zip(indices, photos, strict=True):
        want = transform(load_image(s.path))
        assert images[i].shape == want.shape
        diff = levels(images[i], want, std)
        assert float(diff.max()) <= 1 + 1e-3, s.path.name
        off += int((diff > 0.5).sum())
    assert off <= 0.01 * images.numel()


def test_byte_batches_match_the_pil_path_within_one_level(photos):
    assert_within_one_level(photos)


def test_the_cpu_resize_is_torchs_uint8_kernel_whatever_torchvision_picks(photos, monkeypatch):
    """torchvision decides per version and CPU whether a uint8 tensor's bilinear resize runs
    torch's uint8 kernel or a float32 resample (torchvision 0.19 on an AVX-512 CPU takes the
    float one); here it is told to take the float one, and the device path still rounds as PIL.
    """
    from torchvision.transforms.v2.functional import _geometry

    if not hasattr(_geometry, "_do_native_uint8_resize_on_cpu"):
        pytest.skip("this torchvision no longer picks its uint8 resize kernel per CPU")
    monkeypatch.setattr(_geometry, "_do_native_uint8_resize_on_cpu", lambda *_: False)
    assert_within_one_level(photos[:8])


def test_boxes_move_as_the_pil_path_moves_them(photos, tmp_path):
    transform = make_transform("standard")
    s = photos[0]
    with Image.open(s.path) as image:
        w, h = image.size
    box = (0.1 * w, 0.2 * h, 0.7 * w, 0.9 * h)
    (_, _, boxes, _), _ = decode_all([sample(s.path, box=box)], transform)
    _, want = transform.with_box(load_image(s.path), box)
    assert boxes[0] == pytest.approx(want, abs=1e-9)


def _formats(src: Path, root: Path) -> dict[str, Path]:
    """The same photo as PNG, CMYK JPEG, EXIF-rotated JPEG, plus a corrupt and a missing file."""
    with Image.open(src) as image:
        rgb = image.convert("RGB")
    out = {name: root / name for name in ("p.png", "cmyk.jpg", "rot.jpg", "bad.jpg", "gone.jpg")}
    rgb.save(out["p.png"])
    rgb.convert("CMYK").save(out["cmyk.jpg"])
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(out["rot.jpg"], exif=exif)
    out["bad.jpg"].write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return out


def test_formats_the_device_decoder_does_not_take_are_decoded_on_the_cpu_and_counted(
    photos, tmp_path
):
    from xai_checks.study import _PhotoData

    transform = make_transform("standard")
    files = _formats(photos[0].path, tmp_path)
    samples = [sample(files[n]) for n in ("p.png", "cmyk.jpg", "rot.jpg", "bad.jpg", "gone.jpg")]
    samples.append(photos[1])
    (indices, images, _, failed), decoder = decode_all(samples, transform)
    assert decoder.counts.device == 1
    assert decoder.counts.cpu == {dd.NOT_JPEG: 1, dd.NOT_RGB: 1, dd.ROTATED: 1}
    assert indices == [0, 1, 2, 5]
    # the CPU path's own tensors and its own failure reasons
    cpu = _PhotoData(samples, transform, "standard", None)  # type: ignore[arg-type]
    for row, i in enumerate(indices[:3]):
        assert torch.equal(images[row], cpu[i][1])
    assert failed == [(3, cpu[3][2]), (4, cpu[4][2])]


def test_a_photo_the_device_decoder_refuses_is_redone_on_the_cpu(photos, monkeypatch):
    transform = make_transform("standard")
    real = dd.decode_jpeg

    def picky(data, **kwargs):
        """The batch call fails; one by one, only photo 1 is refused."""
        if isinstance(data, list):
            raise RuntimeError("batch refused")
        if data.numel() == photos[1].path.stat().st_size:
            raise RuntimeError("nvjpeg: unsupported")
        return real(data, **kwargs)

    monkeypatch.setattr(dd, "decode_jpeg", picky)
    data = PhotoBytes(photos[:3], transform)
    (indices, images, _, failed), decoder = decode_all(photos[:3], transform, on_cpu=data.on_cpu)
    assert indices == [0, 1, 2] and failed == []
    assert decoder.counts.device == 2 and decoder.counts.cpu == {dd.REFUSED: 1}
    assert torch.equal(images[1], transform(load_image(photos[1].path)))


def test_auto_picks_precropped_for_small_squares_as_the_pil_path(photos, tmp_path):
    transform = make_transform("auto")
    square = tmp_path / "square.jpg"
    with Image.open(photos[2].path) as image:
        image.convert("RGB").resize((200, 200)).save(square, quality=95)
    samples = [sample(square), photos[3]]
    (indices, images, _, _), decoder = decode_all(samples, transform)
    assert decoder.counts.device == 2
    std = list(transform.standard.normalize.std)
    for i, s in zip(indices, samples, strict=True):
        assert float(levels(images[i], transform(load_image(s.path)), std).max()) <= 1 + 1e-3


def test_a_user_transform_has_no_device_path():
    assert not dd.supports_device_decode(lambda image: image)
    with pytest.raises(TypeError, match="no device decoding"):
        DeviceDecoder(lambda image: image, torch.device("cpu"))  # type: ignore[arg-type]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_nvjpeg_batches_match_the_pil_path(photos):
    """nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's, and the CUDA resize runs
    in float: the tolerance is measured here (printed for the device log), bounded loosely."""
    transform = make_transform("standard")
    (indices, images, _, failed), decoder = decode_all(photos, transform, device="cuda")
    assert failed == [] and decoder.counts.device == len(photos)
    assert images.device.type == "cuda"
    std = list(transform.normalize.std)
    diffs = [
        levels(images[i], transform(load_image(s.path)), std)
        for i, s in zip(indices, photos, strict=True)
    ]
    worst = max(float(d.max()) for d in diffs)
    mean = sum(float(d.mean()) for d in diffs) / len(diffs)
    print(f"nvJPEG vs PIL on {len(diffs)} photos: max {worst:.2f} levels, mean {mean:.4f}")
    assert mean <= 1.0 and worst <= 32
