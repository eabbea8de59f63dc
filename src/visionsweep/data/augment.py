"""Training-time augmentation from an `AugmentConfig`, with torchvision.transforms.v2 on float tensors.

Images are float (N, C, H, W) on the 0..1 scale (before normalisation: ColorJitter and GaussianNoise clamp
to that range). Geometric and photometric transforms draw their random parameters per image; CutMix and
MixUp act on the whole batch and mix the label vectors with the pixels, so a multi-label target becomes
the mixed multi-hot vector and a multi-class target the mixed one-hot vector.

Flips act on the whole batch at once, each image with its own draw: on a GPU a call per image costs more
than the training step of a small CNN. The other per-image transforms take one torchvision call per image:
measured on 2 cores, about 0.4 ms an image at 16x16 and at 128x128 (flip + affine + jitter + crop), small
beside a training step at realistic image sizes.
"""

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.nn.functional import one_hot
from torchvision.transforms import v2

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
        self.multilabel = multilabel
        self.num_classes = num_classes
        self.flips = [(dim, p) for dim, p in ((-1, augment.hflip), (-2, augment.vflip)) if p]  # (image axis, probability)
        self.per_image = per_image_pipeline(augment, image_size)
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
        """Whether each image is changed on its own (flips or the per-image pipeline), before any mixing."""
        return bool(self.flips) or self.per_image is not None

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
        """The per-image transforms only (no mixing): each image gets its own random draw."""
        for dim, p in self.flips:  # on the images' device, with its random generator
            flipped = torch.rand(len(images), device=images.device) < p
            images = torch.where(flipped[:, None, None, None], images.flip(dim), images)
        if self.per_image is None:
            return images
        # v2 draws one set of random parameters per call, so call it per image, not once per batch.
        return torch.stack([self.per_image(image) for image in images])


def per_image_pipeline(augment: AugmentConfig, image_size: int) -> v2.Transform | None:
    """Every per-image transform but the flips (Augmenter.transform flips the whole batch first)."""
    steps = []
    if augment.rotation or augment.translate or augment.scale or augment.shear:
        steps.append(v2.RandomAffine(
            degrees=augment.rotation,
            translate=(augment.translate, augment.translate) if augment.translate else None,
            scale=(1 - augment.scale, 1 + augment.scale) if augment.scale else None,
            shear=augment.shear or None,
        ))
    if augment.crop < 1:
        steps.append(v2.RandomResizedCrop(image_size, scale=(augment.crop, 1.0), antialias=True))
    if augment.brightness or augment.contrast:
        steps.append(v2.ColorJitter(brightness=augment.brightness or None, contrast=augment.contrast or None))
    if augment.noise:
        steps.append(v2.GaussianNoise(sigma=augment.noise, clip=True))
    return v2.Compose(steps) if steps else None


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
