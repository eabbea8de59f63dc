import re

import numpy as np
import pytest
import torch
import torchvision

from visionsweep import models
from visionsweep.models.backbones import BACKBONES

# torchvision backbones need 32 px (their downsampling is 32x); the others also train on digits' 8 px.
SIZES = {name: 32 if name in BACKBONES or name == "feature_concat" else 8 for name in models.names()}
# Building one of these takes seconds (weight init of 21-87 M parameters): they get one shape. Their 1-channel
# path is the same code as the smaller backbones', which get both.
LARGE = {"resnet34", "resnet50", "wide_resnet50_2", "resnext50_32x4d", "resnext101_32x8d", "densenet201"}
SHAPES = [(1, 10, False), (3, 4, True)]  # in_channels, num_classes, multilabel


def forward_backward(model, in_channels, size, num_classes):
    model.train()
    logits = model(torch.randn(2, in_channels, size, size))
    assert logits.shape == (2, num_classes)
    logits.sum().backward()
    trained = [p for p in model.parameters() if p.requires_grad]
    assert trained and all(p.grad is not None for p in trained)


@pytest.mark.parametrize(
    "name, in_channels, num_classes, multilabel",
    [(name, *shape) for name in models.names() for shape in (SHAPES[1:] if name in LARGE else SHAPES)],
)
def test_every_registered_model_trains_on_a_tiny_batch(name, in_channels, num_classes, multilabel):
    size = SIZES[name]
    model = models.create(name, num_classes=num_classes, in_channels=in_channels, image_size=size, multilabel=multilabel)
    forward_backward(model, in_channels, size, num_classes)


@pytest.mark.parametrize("name", ["cnn", "mlp", "vgg", "resnet_inception"])
def test_small_models_with_other_shapes(name):
    model = models.create(name, num_classes=2, in_channels=3, image_size=16, multilabel=False)
    forward_backward(model, 3, 16, 2)


def test_unknown_model_and_parameter_name_what_is_allowed():
    with pytest.raises(ValueError, match="not registered; allowed: cnn"):
        models.create("nope", num_classes=2, in_channels=1, image_size=8)
    with pytest.raises(ValueError, match=r"has no parameter depth; allowed: n_conv.*conv\{i\}.kernel_size"):
        models.create("cnn", num_classes=2, in_channels=1, image_size=8, depth=3)
    with pytest.raises(ValueError, match="has no parameter conv1.colour"):
        models.create("cnn", num_classes=2, in_channels=1, image_size=8, **{"conv1.colour": 3})
    with pytest.raises(ValueError, match="model 'cnn': conv2.pool = 'median': Input should be 'max', 'avg' or 'none'"):
        models.create("cnn", num_classes=2, in_channels=1, image_size=8, **{"conv2.pool": "median"})


@pytest.mark.parametrize("name", models.names())
def test_every_models_defaults_fit_its_declared_parameter_types(name):
    models.check_params(name, models.parameters(name))


def test_values_outside_a_declared_type_or_range_are_refused_before_building():
    for params, problem in [({"kernel_size": "abc"}, "kernel_size = 'abc': Input should be a valid integer"),
                            ({"kernel_size": -3}, "kernel_size = -3: Input should be greater than 0"),
                            ({"channels": 0}, "channels = 0: Input should be greater than 0"),
                            ({"dense2.dropout": 2.0}, "dense2.dropout = 2.0: Input should be less than 1")]:
        with pytest.raises(ValueError, match=re.escape(f"model 'cnn': {problem}")):
            models.create("cnn", num_classes=2, in_channels=1, image_size=8, **params)
    models.check_params("cnn", {"kernel_size": np.int64(5), "channel_growth": 1, "conv1.batchnorm": False})


def test_cnn_too_many_pooled_blocks_for_the_image_is_a_clear_error():
    with pytest.raises(ValueError, match="smaller than one pixel; use fewer than 4 conv blocks"):
        models.create("cnn", num_classes=2, in_channels=1, image_size=8, n_conv=4)


def test_cnn_per_layer_values_override_the_model_wide_ones():
    model = models.create(
        "cnn", num_classes=3, in_channels=1, image_size=8, n_conv=2, kernel_size=3, n_dense=2,
        **{"conv2.kernel_size": 5, "conv2.channels": 7, "conv1.pool": "none", "dense2.units": 9},
    )
    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3), (5, 5)] and convs[1].out_channels == 7
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model) == 1
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [lin.out_features for lin in linears] == [64, 9, 3] and linears[0].in_features == 7 * 4 * 4


def test_backbone_freeze_modes_and_hidden_head():
    build = lambda **p: models.create("resnet18", num_classes=3, in_channels=1, image_size=32, **p)  # noqa: E731
    trainable = lambda m: {n.split(".")[3] for n, p in m.named_parameters() if p.requires_grad and n.startswith("extractors")}  # noqa: E731
    assert trainable(build(freeze="none")) >= {"conv1", "layer1", "layer4"}
    frozen = build(freeze="backbone", head_units=16, head_dropout=0.5)
    assert trainable(frozen) == set() and [m.out_features for m in frozen.head if isinstance(m, torch.nn.Linear)] == [16, 3]
    assert trainable(build(freeze="all_but_last_n", unfreeze_last_n=2)) == {"layer3", "layer4"}
    frozen.train()
    assert not frozen.extractors[0].net.training and frozen.head.training  # frozen batchnorm keeps its statistics
    with pytest.raises(ValueError, match="freeze = 'some': Input should be 'none', 'backbone' or 'all_but_last_n'"):
        build(freeze="some")


def test_small_images_need_resize_to_for_backbones():
    with pytest.raises(ValueError, match="8px images are too small for this backbone.*set resize_to"):
        models.create("densenet121", num_classes=3, in_channels=1, image_size=8)
    model = models.create("mobilenet_v3_small", num_classes=3, in_channels=1, image_size=8, resize_to=32)
    forward_backward(model, 1, 8, 3)


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    source = torchvision.models.resnet18(weights=None)  # stands in for ImageNet weights: a 1000-class state dict
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    model = models.create("resnet18", num_classes=5, in_channels=3, image_size=32, pretrained=str(path))
    loaded = model.extractors[0].net.state_dict()
    assert torch.equal(loaded["conv1.weight"], source.state_dict()["conv1.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], source.state_dict()["layer4.1.bn2.running_var"])
    fresh = models.create("resnet18", num_classes=5, in_channels=3, image_size=32)
    assert not torch.equal(fresh.extractors[0].net.state_dict()["conv1.weight"], source.state_dict()["conv1.weight"])


def test_missing_or_wrong_pretrained_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="pretrained weights file '.*nowhere.pt' does not exist.*pretrained: true"):
        models.create("resnet18", num_classes=5, in_channels=3, image_size=32, pretrained=str(tmp_path / "nowhere.pt"))
    wrong = tmp_path / "mobilenet.pt"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match="is not a state dict of resnet18"):
        models.create("resnet18", num_classes=5, in_channels=3, image_size=32, pretrained=str(wrong))


def test_feature_concat_joins_both_feature_widths():
    model = models.create("feature_concat", num_classes=4, in_channels=3, image_size=32, first="resnet18",
                          second="mobilenet_v3_small")
    assert model.head[-1].in_features == 512 + 1024
    assert all(not p.requires_grad for p in model.extractors.parameters())


def test_resnet_inception_from_a_stage_list():
    model = models.create("resnet_inception", num_classes=2, in_channels=1, image_size=8, shortcut="none",
                          stages=[{"kind": "inception", "blocks": 1, "width": 8}, {"kind": "resnet", "blocks": 2, "width": 16}])
    forward_backward(model, 1, 8, 2)
    with pytest.raises(ValueError, match=r"stages\[0\].kind 'dense'; allowed: resnet, inception"):
        models.create("resnet_inception", num_classes=2, in_channels=1, image_size=8,
                      stages=[{"kind": "dense", "blocks": 1, "width": 8}])


def test_trained_model_rebuilds_without_its_starting_weights_file(tmp_path):
    """A promoted model carries its own weights: the `pretrained` file it started from may be gone."""
    start = tmp_path / "resnet18.pt"
    shape = dict(num_classes=3, in_channels=3, image_size=32, multilabel=False)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), start)
    trained = models.create("resnet18", **shape, pretrained=str(start))
    start.unlink()
    with pytest.raises(ValueError, match="does not exist"):
        models.create("resnet18", **shape, pretrained=str(start))
    rebuilt = models.create("resnet18", **shape, **models.without_pretrained({"pretrained": str(start)}))
    rebuilt.load_state_dict(trained.state_dict())
    x = torch.randn(2, 3, 32, 32)
    trained.eval(), rebuilt.eval()
    assert torch.equal(trained(x), rebuilt(x))
