"""Training-time augmentation from an `AugmentConfig`, with torchvision.transforms.v2 on float tensors.

Images are float (N, C, H, W) on the 0..1 scale (before normalisation: ColorJitter and GaussianNoise clamp
to that range). Geometric and photometric transforms draw their random parameters per image; CutMix and
MixUp act on the whole batch and mix the label vectors with the pixels, so a multi-label target becomes
the mixed multi-hot vector and a multi-class target the mixed one-hot vector.

Every transform acts on the whole batch at once, each image with its own random draw, in plain torch ops:
torchvision's v2 transforms draw one set of parameters per call, and a call per image cost about 0.4 ms an
image on 2 cores (flip + affine + jitter + crop), as much as a small CNN's training step (bench/throughput.py
measures both). Each keeps the meaning of its torchvision transform, with the same draws: RandomAffine
(rotation, translate, scale, shear; bilinear, zeros outside), RandomResizedCrop (of the affine's output; one
resampling does both), ColorJitter (brightness, then contrast: the two commute but for clipping) and
GaussianNoise (clipped to 0..1).
"""

import math

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn.functional import affine_grid, grid_sample, one_hot
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import rgb_to_grayscale

OFFLINE_CHUNK = 1024  # images converted to float at a time when making offline copies


class AugmentConfig(BaseModel):
    """Training-time augmentation, torchvision.transforms.v2 on tensors. Search any of these as `augment.NAME`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    hflip: float = Field(0.0, ge=0, le=1)  # probability of a horizontal flip
    vflip: float = Field(0.0, ge=0, le=1)  # probability of a vertical flip
    rotation: float = Field(0.0, ge=0, le=180)  # degrees, drawn in [-rotation, rotation]
    translate: float = Field(0.0, ge=0, lt=1)  # fraction of the side, each direction
    scale: float = Field(0.0, ge=0, lt=1)  # zoom drawn in [1 - scale, 1 + scale]
    shear: float = Field(0.0, ge=0, lt=90)  # degrees
    crop: float = Field(1.0, gt=0, le=1)  # RandomResizedCrop's smallest area fraction; 1 = off
    brightness: float = Field(0.0, ge=0, lt=1)  # factor drawn in [1 - brightness, 1 + brightness]
    contrast: float = Field(0.0, ge=0, lt=1)  # factor drawn in [1 - contrast, 1 + contrast]
    noise: float = Field(0.0, ge=0)  # std of Gaussian noise on the 0..1 pixel scale
    cutmix: float = Field(0.0, ge=0)  # CutMix Beta alpha per batch; 0 = off
    mixup: float = Field(0.0, ge=0)  # MixUp Beta alpha per batch; 0 = off (with cutmix: one of them per batch)
    offline_copies: int = Field(0, ge=0)  # augmented copies of each training image, made once per trial


class Augmenter:
    """Call with a batch (images, targets) to get an augmented batch; targets are class indices or multi-hot."""

    def __init__(self, augment: AugmentConfig, image_size: int, num_classes: int, multilabel: bool):
        self.augment = augment
        self.multilabel = multilabel
        self.num_classes = num_classes
        self.flips = [(dim, p) for dim, p in ((-1, augment.hflip), (-2, augment.vflip)) if p]  # (image axis, probability)
        self.warps = bool(augment.rotation or augment.translate or augment.scale or augment.shear or augment.crop < 1)
        mixers = []  # given (N, classes) target vectors, they mix those like the pixels
        if augment.cutmix > 0:
            mixers.append(v2.CutMix(alpha=augment.cutmix))
        if augment.mixup > 0:
            mixers.append(v2.MixUp(alpha=augment.mixup))
        self.mixer = None if not mixers else mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)

    @property
    def active(self) -> bool:
        return self.transforms or self.mixer is not None

    @property
    def transforms(self) -> bool:
        """Whether each image is changed on its own (flips, warps, jitter, noise), before any mixing."""
        a = self.augment
        return bool(self.flips) or self.warps or bool(a.brightness or a.contrast or a.noise)

    @property
    def mixes(self) -> bool:
        """Whether targets come back as (N, classes) probabilities even for multi-class data."""
        return self.mixer is not None

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.transform(images)
        if self.mixer is not None:
            vectors = targets.float() if self.multilabel else one_hot(targets, self.num_classes).float()
            images, targets = self.mixer(images, vectors) if len(images) > 1 else (images, vectors)
        return images, targets

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """The per-image transforms only (no mixing), on the whole batch: each image gets its own random draw."""
        a, n, device = self.augment, len(images), images.device
        for dim, p in self.flips:
            flipped = torch.rand(n, device=device) < p
            images = torch.where(flipped[:, None, None, None], images.flip(dim), images)
        if self.warps:
            images = warp(images, self.warp_matrices(n, *images.shape[-2:], device))
        if a.brightness:  # torchvision's adjust_brightness: a blend with black
            images = (images * _uniform(n, 1 - a.brightness, 1 + a.brightness, device)[:, None, None, None]).clamp_(0, 1)
        if a.contrast:  # torchvision's adjust_contrast: a blend with the image's mean grey level
            factor = _uniform(n, 1 - a.contrast, 1 + a.contrast, device)[:, None, None, None]
            grey = rgb_to_grayscale(images) if images.shape[1] == 3 else images
            images = (factor * images + (1 - factor) * grey.mean(dim=(1, 2, 3), keepdim=True)).clamp_(0, 1)
        if a.noise:
            images = (images + a.noise * torch.randn_like(images)).clamp_(0, 1)
        return images

    def warp_matrices(self, n: int, height: int, width: int, device) -> torch.Tensor:
        """(n, 2, 3) matrices, one per image, of RandomAffine's draws and then RandomResizedCrop's box."""
        a = self.augment
        matrices = affine_matrices(
            angle=_uniform(n, -a.rotation, a.rotation, device),
            translate=torch.stack([_uniform(n, -a.translate * width, a.translate * width, device).round(),
                                   _uniform(n, -a.translate * height, a.translate * height, device).round()], dim=1),
            scale=_uniform(n, 1 - a.scale, 1 + a.scale, device),
            shear=_uniform(n, -a.shear, a.shear, device),
        )
        if a.crop < 1:
            matrices = matrices @ crop_matrices(*crop_boxes(n, height, width, a.crop, device), height, width)
        return matrices[:, :2]


def affine_matrices(angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor, shear: torch.Tensor):
    """(n, 3, 3) matrices from output to input pixel coordinates (origin at the image's centre): torchvision's
    _get_inverse_affine_matrix for each image's angle and shear (degrees), translate (n, 2) pixels and scale,
    centre 0, no vertical shear."""
    angle, shear = torch.deg2rad(angle), torch.deg2rad(shear)
    cos, sin, tan = angle.cos(), angle.sin(), shear.tan()
    m00, m01 = (cos - sin * tan) / scale, (cos * tan + sin) / scale  # the inverse of rotation x shear, / scale
    m10, m11 = -sin / scale, cos / scale
    tx, ty = translate.unbind(dim=1)
    zeros = torch.zeros_like(angle)
    return torch.stack([
        torch.stack([m00, m01, -m00 * tx - m01 * ty], dim=1),
        torch.stack([m10, m11, -m10 * tx - m11 * ty], dim=1),
        torch.stack([zeros, zeros, zeros + 1], dim=1),
    ], dim=1)


def crop_matrices(box_w, box_h, left, top, height: int, width: int) -> torch.Tensor:
    """(n, 3, 3): output pixel of a box resized to the whole image -> pixel inside the box (centred coordinates)."""
    crop = torch.zeros(len(box_w), 3, 3, device=box_w.device)
    crop[:, 0, 0], crop[:, 1, 1], crop[:, 2, 2] = box_w / width, box_h / height, 1
    crop[:, 0, 2] = left + box_w / 2 - width / 2
    crop[:, 1, 2] = top + box_h / 2 - height / 2
    return crop


def crop_boxes(n: int, height: int, width: int, smallest: float, device, tries: int = 10):
    """RandomResizedCrop's boxes (width, height, left, top in pixels; not rounded), `tries` draws per image as
    torchvision makes them one after the other: area fraction in [smallest, 1], aspect ratio log-uniform in
    [3/4, 4/3]; the first draw that fits, else the whole image (torchvision's fallback for a square image)."""
    area = _uniform((n, tries), smallest, 1, device) * height * width
    ratio = torch.exp(_uniform((n, tries), math.log(3 / 4), math.log(4 / 3), device))
    box_w, box_h = (area * ratio).sqrt(), (area / ratio).sqrt()
    fits = (box_w <= width) & (box_h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # 0 where none fits: replaced below
    box_w = torch.where(fits.any(dim=1), box_w.gather(1, first)[:, 0], torch.tensor(float(width), device=device))
    box_h = torch.where(fits.any(dim=1), box_h.gather(1, first)[:, 0], torch.tensor(float(height), device=device))
    left = torch.rand(n, device=device) * (width - box_w)
    top = torch.rand(n, device=device) * (height - box_h)
    return box_w, box_h, left, top


def warp(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resamples each image through its (2, 3) output -> input matrix in pixel coordinates centred on the image
    (torchvision's convention), bilinear, zeros outside: one grid_sample for the whole batch."""
    height, width = images.shape[-2:]
    to_unit = torch.tensor([[1, height / width, 2 / width], [width / height, 1, 2 / height]], device=images.device)
    grid = affine_grid(matrices * to_unit, list(images.shape), align_corners=False)
    return grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _uniform(shape, low: float, high: float, device) -> torch.Tensor:
    return torch.rand(shape, device=device) * (high - low) + low


def offline_copies(images: torch.Tensor, targets: torch.Tensor, augmenter: Augmenter, copies: int):
    """The uint8 (N, C, H, W) training set plus `copies` augmented copies of every image (per-image transforms, no mixing)."""
    if copies == 0 or not augmenter.transforms:
        return images, targets
    expanded = [images] + [
        augmenter.transform(chunk.float().div(255)).mul_(255).round_().to(torch.uint8)
        for _ in range(copies)
        for chunk in images.split(OFFLINE_CHUNK)
    ]
    return torch.cat(expanded), targets.repeat(copies + 1, *([1] * (targets.ndim - 1)))
