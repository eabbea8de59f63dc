"""Augmentation keeps shapes and labels right; mixing mixes label vectors; imbalance weights follow counts."""

import numpy as np
import pytest
import torch

from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from visionsweep.data import imbalance
from visionsweep.data.augment import AugmentConfig, Augmenter, affine_matrices, crop_matrices, offline_copies, warp

EVERYTHING = dict(hflip=0.5, vflip=0.5, rotation=20, translate=0.1, scale=0.2, shear=10, crop=0.6,
                  brightness=0.3, contrast=0.3, noise=0.05)


def test_every_per_image_setting_is_covered():
    mixing_and_copies = {"cutmix", "mixup", "offline_copies"}
    assert set(EVERYTHING) == set(AugmentConfig.model_fields) - mixing_and_copies


@pytest.mark.parametrize("setting", list(EVERYTHING))
def test_each_augmentation_keeps_shape_range_and_labels(setting):
    torch.manual_seed(0)
    images, labels = torch.rand(6, 3, 12, 12), torch.tensor([0, 1, 2, 0, 1, 2])
    augmenter = Augmenter(AugmentConfig(**{setting: EVERYTHING[setting]}), 12, 3, multilabel=False)
    out, targets = augmenter(images, labels)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, images)
    assert torch.equal(targets, labels)


def test_random_parameters_are_drawn_per_image():
    torch.manual_seed(0)
    image = torch.rand(1, 1, 10, 10)
    out = Augmenter(AugmentConfig(rotation=45), 10, 2, False).transform(image.repeat(8, 1, 1, 1))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


def smooth_image(size=16):
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return torch.stack([torch.sin(x / 3) / 2 + 0.5, torch.cos(y / 4) / 2 + 0.5, (x + y) / (2 * size)]).float()


@pytest.mark.parametrize("angle, translate, scale, shear", [(30, (2, -1), 1.1, 0), (0, (0, 0), 1, 15),
                                                            (-20, (1, 3), 0.8, 10)])
def test_batched_affine_is_torchvisions_affine(angle, translate, scale, shear):
    image = smooth_image()
    expected = tvf.affine(image, angle=angle, translate=list(translate), scale=scale, shear=[shear, 0.0],
                          interpolation=InterpolationMode.BILINEAR)
    matrices = affine_matrices(torch.tensor([float(angle)]), torch.tensor([translate], dtype=torch.float),
                               torch.tensor([float(scale)]), torch.tensor([float(shear)]))
    torch.testing.assert_close(warp(image[None], matrices[:, :2])[0], expected, atol=1e-5, rtol=0)


def test_batched_crop_is_torchvisions_resized_crop_inside_the_border():
    # resized_crop cuts the box out first and so repeats its edge; the batched warp samples the pixels just outside
    image = smooth_image()
    top, left, height, width = 3, 2, 10, 12
    expected = tvf.resized_crop(image, top, left, height, width, [16, 16], InterpolationMode.BILINEAR, antialias=False)
    box = [torch.tensor([float(v)]) for v in (width, height, left, top)]
    out = warp(image[None], crop_matrices(*box, 16, 16)[:, :2])[0]
    torch.testing.assert_close(out[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_crop_boxes_are_drawn_like_torchvisions():
    torch.manual_seed(0)
    matrices = Augmenter(AugmentConfig(crop=0.25), 64, 2, False).warp_matrices(4000, 64, 64, "cpu")
    area = matrices[:, 0, 0] * matrices[:, 1, 1]  # the box's share of the image
    crop = v2.RandomResizedCrop(64, scale=(0.25, 1.0))
    boxes = [crop.make_params([torch.zeros(1, 64, 64)]) for _ in range(4000)]
    expected = torch.tensor([box["height"] * box["width"] / 64**2 for box in boxes])
    assert area.min() >= 0.25 - 1e-6 and area.max() <= 1 + 1e-6
    assert abs(area.mean() - expected.mean()) < 0.015 and abs((area == 1).float().mean() - (expected == 1).float().mean()) < 0.02


@pytest.mark.parametrize("setting, dim", [("hflip", -1), ("vflip", -2)])
def test_flips_act_on_the_batch_with_a_draw_per_image(setting, dim):
    torch.manual_seed(0)
    image = torch.rand(1, 2, 6, 6)
    out = Augmenter(AugmentConfig(**{setting: 0.5}), 6, 2, False).transform(image.repeat(64, 1, 1, 1))
    flipped = [torch.equal(o, image[0].flip(dim)) for o in out]
    assert all(f or torch.equal(o, image[0]) for f, o in zip(flipped, out))  # each image whole: flipped or not
    assert 16 < sum(flipped) < 48


def test_no_augmentation_is_inactive():
    assert not Augmenter(AugmentConfig(), 8, 3, False).active


@pytest.mark.parametrize("mixing", [{"cutmix": 1.0}, {"mixup": 1.0}, {"cutmix": 1.0, "mixup": 0.4}])
def test_mixing_mixes_multilabel_vectors(mixing):
    torch.manual_seed(1)
    images = torch.stack([torch.full((1, 8, 8), float(i) / 8) for i in range(8)])
    labels = torch.eye(8, 4)  # rows 0-3 one label each, rows 4-7 no label
    out, targets = Augmenter(AugmentConfig(**mixing), 8, 4, multilabel=True)(images, labels)
    assert out.shape == images.shape and targets.shape == (8, 4) and targets.dtype == torch.float32
    assert torch.all(targets >= 0) and torch.all(targets <= 1)
    assert not torch.equal(targets, labels)  # label vectors were mixed with the pixels
    # each target is a convex mix of two original label vectors: its mass is at most 1
    assert torch.all(targets.sum(dim=1) <= 1 + 1e-6)


def test_mixing_multiclass_gives_mixed_one_hot_targets():
    torch.manual_seed(2)
    out, targets = Augmenter(AugmentConfig(mixup=1.0), 8, 5, False)(torch.rand(6, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0]))
    assert targets.shape == (6, 5) and torch.allclose(targets.sum(dim=1), torch.ones(6))


def test_offline_copies_expand_training_rows_with_their_labels():
    images, labels = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8), torch.eye(5, 3)
    augmenter = Augmenter(AugmentConfig(hflip=1.0), 8, 3, True)
    more, more_labels = offline_copies(images, labels, augmenter, 2)
    assert more.shape == (15, 1, 8, 8) and more.dtype == torch.uint8 and torch.equal(more_labels, labels.repeat(3, 1))
    assert torch.equal(more[5:10], images.flip(-1)) and torch.equal(more[:5], images)


def test_balanced_weights_and_oversampling_follow_counts():
    labels = np.array([0] * 8 + [1] * 2)
    np.testing.assert_allclose(imbalance.loss_weights(labels, 3), [10 / 16, 10 / 4, 1.0])
    draws = imbalance.sample_weights(labels, 3, power=1.0)
    assert draws[labels == 0].sum() == pytest.approx(draws[labels == 1].sum())  # each class equally often
    multi = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], np.uint8)
    np.testing.assert_allclose(imbalance.loss_weights(multi, 2), [1 / 3, 3.0])
    np.testing.assert_allclose(imbalance.sample_weights(multi, 2, 1.0), [1 / 3, 1 / 3, 1.0, 1.0])
    assert np.all(imbalance.sample_weights(multi, 2, 0.0) == 1)


def test_channel_stats_in_chunks_match_numpy():
    from visionsweep.trainables import channel_stats

    images = np.random.default_rng(0).integers(0, 256, (50, 6, 6, 3), dtype=np.uint8)
    mean, std = channel_stats(images, chunk=7)
    pixels = images.reshape(-1, 3) / 255
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(std, pixels.std(axis=0) + 1e-6, rtol=1e-6)
