"""Your own training function: a plain PyTorch loop that visionsweep runs once per trial.

The sweep file names it (`trainable: byo.train:train`); visionsweep calls `train(params, trial)` with the
trial's sampled `params` and a `trial` that holds the split (`trial.data`), `trial.max_epochs` and
`trial.device`. One `trial.report(...)` per epoch: visionsweep checkpoints it, ASHA may stop the trial there,
and the best epoch's predictions and model go to MLflow for the ensemble.
"""

import torch
from torch import nn

from byo.model import small_cnn

BATCH = 64  # images per optimizer step


def train(params: dict, trial) -> None:
    data, device = trial.data, trial.device
    torch.manual_seed(params.get("seed", 0))
    model = small_cnn(num_classes=len(data.classes), in_channels=data.x_train.shape[3],
                      image_size=data.x_train.shape[1], width=params.get("width", 16), dropout=params.get("dropout", 0.1))
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=params["lr"], momentum=0.9, nesterov=True)
    state = trial.restore()  # after a crash or a resumed sweep: what the last report saved; None on a fresh start
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])

    x_train, y_train = as_input(data.x_train, trial), torch.as_tensor(data.y_train, device=device)
    x_val, x_test = as_input(data.x_val, trial), as_input(data.x_test, trial)
    for epoch in range(trial.epoch + 1, trial.max_epochs + 1):  # trial.epoch: epochs already reported
        model.train()
        for batch in torch.randperm(len(x_train), device=device).split(BATCH):
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_probs, test_probs = model(x_val).softmax(dim=1), model(x_test).softmax(dim=1)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        if params.get("keep_predictions", True):  # val_accuracy is scored from val_probs
            trial.report({"train_loss": loss.item()}, val_probs=val_probs, test_probs=test_probs, model=model,
                         state=state)
        else:  # metrics alone: the trial is still tracked, and the ensemble names it as left out
            accuracy = float((val_probs.argmax(dim=1).cpu().numpy() == data.y_val).mean())
            trial.report({"train_loss": loss.item(), "val_accuracy": accuracy}, state=state)


def as_input(images, trial) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W), normalised by the training images' channel statistics."""
    x = torch.as_tensor(images, device=trial.device).permute(0, 3, 1, 2).float() / 255
    stats = trial.data.normalization
    mean = torch.tensor(stats["mean"], device=trial.device)[:, None, None]
    std = torch.tensor(stats["std"], device=trial.device)[:, None, None]
    return (x - mean) / std
