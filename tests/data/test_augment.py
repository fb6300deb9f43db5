import pytest
import torch

from scaletrain.modalities.image.augment import AugmentSettings, ImageAugment


def batch():
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 4:12, 2:6] = 1.0  # an off-centre bar, so flips and shifts move it
    return x


@pytest.mark.parametrize("setting", [dict(shift=0.2), dict(flip=True), dict(rotate=30), dict(scale=0.3),
                                     dict(noise=0.1), dict(erase=1.0)])
def test_each_augmentation_changes_images_reproducibly(setting):
    x = batch()
    a = ImageAugment(AugmentSettings(**setting), seed=1)(x)
    b = ImageAugment(AugmentSettings(**setting), seed=1)(x)
    c = ImageAugment(AugmentSettings(**setting), seed=2)(x)
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x) and not torch.equal(a, c)


def test_flip_mirrors_about_half_the_images():
    x = batch()
    out = ImageAugment(AugmentSettings(flip=True), seed=0)(x)
    flipped = [torch.allclose(o, x[0].flip(-1), atol=1e-5) for o in out]
    assert 16 < sum(flipped) < 48


def test_erasing_zeroes_a_rectangle():
    x = torch.ones(8, 3, 16, 16)
    out = ImageAugment(AugmentSettings(erase=1.0), seed=0)(x)
    zeros = (out == 0).all(dim=1).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros < 16 * 16).all()


def test_no_settings_means_no_change():
    x = batch()
    assert not AugmentSettings().active
    assert torch.equal(ImageAugment(AugmentSettings())(x), x)


def test_shifts_move_images_by_whole_pixels_without_blurring():
    x = torch.rand(32, 1, 12, 12)
    out = ImageAugment(AugmentSettings(shift=0.25, flip=True), seed=3)(x)
    for original, shifted in zip(x[:, 0], out[:, 0]):
        candidates = [original, original.flip(-1)]
        found = False
        for image in candidates:
            padded = torch.nn.functional.pad(image, (3, 3, 3, 3))
            found |= any(torch.equal(shifted, padded[3 + dy:15 + dy, 3 + dx:15 + dx])
                         for dy in range(-3, 4) for dx in range(-3, 4))
        assert found  # an exact crop of the zero-padded image (or its mirror): no interpolated value
    assert not torch.equal(out, x)
