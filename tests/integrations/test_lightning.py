"""`DepthscopeCallback` in a real ``Trainer.fit`` on a tiny model."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from tests.monitor.models import digits_batches, residual_mlp, train
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import depthscope as ds
from depthscope.integrations.lightning import DepthscopeCallback

STEPS = 3
BATCH = 8


class TinyModule(pl.LightningModule):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# Lightning's advice about data-loader workers is noise here, and Lightning 2.6 uses torch's
# pytree LeafSpec, which torch 2.14 deprecates (third-party noise).
@pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning")
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@pytest.mark.filterwarnings("ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")
def test_callback_in_trainer_fit_records_what_a_plain_loop_records(tmp_path):
    batches = digits_batches(STEPS, batch=BATCH)
    net = residual_mlp(depth=3)
    twin = copy.deepcopy(net)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)
    callback = DepthscopeCallback(every=1, console=False, log_dir=tmp_path / "tb")
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[callback],
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(TinyModule(net), loader)
    history = callback.history
    assert history.blocks == tuple(f"net.blocks.{k}" for k in range(3))
    assert history.steps.tolist() == list(range(STEPS))
    assert (tmp_path / "tb" / "depthscope_history.json").exists()  # closed at the end of fit

    plain = ds.Monitor(twin, example=batches[0][0], console=False)
    train(twin, plain, batches)
    plain.close()
    for q in ("grad_norm", "param_grad_norm", "update_ratio", "act_var"):
        np.testing.assert_allclose(history.array(q), plain.history.array(q), rtol=1e-5, err_msg=q)


def test_callback_needs_a_tensor_input():
    from depthscope.integrations.lightning import _batch_input

    with pytest.raises(ds.InputError, match="example"):
        _batch_input(TinyModule(residual_mlp()), {"x": torch.zeros(2, 64)})
