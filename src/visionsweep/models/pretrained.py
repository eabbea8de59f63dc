"""`pretrained: true`: weights fetched the libraries' own way, into their own caches.

torchvision's weights enums download into torch.hub's folder, `$TORCH_HOME/hub/checkpoints/<file>`
(TORCH_HOME defaults to ~/.cache/torch); timm's weights come from the Hugging Face hub cache,
`$HF_HOME/hub/models--timm--<name>.<tag>/snapshots/<revision>/model.safetensors` (HF_HOME defaults to
~/.cache/huggingface). Either library reads its cache first and goes to the network only when the file is
not there, so a machine without a network works once the file is in place. When it is not, the error
names the file and the exact path to put it at.
"""

import contextlib
import os

import torch


class WeightsUnavailable(ValueError):
    """Pretrained weights that are neither cached nor downloadable here."""


@contextlib.contextmanager
def explained(model: str, hint: str):
    """Turns a failed download (no network, no cached file) into an error that says where the file goes."""
    try:
        yield
    except OSError as err:  # URLError, socket errors, Hugging Face's offline and missing-entry errors
        raise WeightsUnavailable(
            f"{model}: pretrained weights are not in the cache and could not be downloaded "
            f"({type(err).__name__}: {str(err).strip().splitlines()[0][:300]}). {hint}"
        ) from None


def torchvision_weights(builder):
    """The DEFAULT weights enum member of a torchvision model builder (e.g. ResNet18_Weights.IMAGENET1K_V1)."""
    import torchvision

    return torchvision.models.get_model_weights(builder).DEFAULT


def torchvision_cache_path(weights) -> str:
    """Where torch.hub keeps (and first looks for) the enum's file."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def torchvision_cache_hint(weights) -> str:
    return f"Download {weights.url} and put it at {torchvision_cache_path(weights)} (torch.hub's cache, from TORCH_HOME)"


def timm_cache_hint(name: str) -> str:
    """Where huggingface_hub looks for a timm model's weights, or torch.hub's folder for weights given by URL."""
    import timm
    from huggingface_hub import constants

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = cfg.hf_hub_id if cfg else None
    if hub_id:
        repo = os.path.join(constants.HF_HUB_CACHE, "models--" + hub_id.replace("/", "--"))
        return (f"Download model.safetensors of https://huggingface.co/{hub_id} and put it at "
                f"{repo}/snapshots/<revision>/model.safetensors, with the revision's name in {repo}/refs/main "
                "(the Hugging Face cache, from HF_HOME)")
    if cfg and cfg.url:
        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(cfg.url))
        return f"Download {cfg.url} and put it at {path} (torch.hub's cache, from TORCH_HOME)"
    return f"timm knows no pretrained weights for {name}"
