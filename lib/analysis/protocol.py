"""The authors' measuring protocol as a variant: BatchNorm on each image's own statistics, one image at a time.

The published Fourier notebook of Park & Kim feeds a single image to a timm model that was never
put in eval mode (methods.md §5): its BatchNorm layers normalise with the statistics of that one
image, not with the running statistics learned in training. The book measures in eval mode over
the whole test set. This module runs the book's analyses the authors' way, so a chapter can show
both side by side and say which readings depend on the protocol:

- :func:`own_statistics` copies a model so that its BatchNorm layers always use the statistics of
  the batch they see (and update nothing the caller keeps); every other layer stays in eval mode
  (dropout and drop-path off, as in the authors' timm models, where both rates are 0);
- the analyses below feed it one image at a time, so each image is normalised by itself alone.

A model without BatchNorm (the ViT) gives exactly the book's own values.
"""

from __future__ import annotations

import copy
import types

import pandas as pd
import torch
from torch import nn

from lib.analysis import fourier, trend

__all__ = ["own_statistics", "high_frequency_by_depth", "high_frequency_trend"]


def _stay_in_training(self, mode: bool = True):
    return self


def own_statistics(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode whose BatchNorm layers normalise with each batch's own statistics.

    The copy's BatchNorm layers ignore ``eval()`` (an analysis that switches the model to eval
    mode keeps them on batch statistics); their running statistics change only in the copy.
    """
    out = copy.deepcopy(model).eval()
    for module in out.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.training = True
            module.train = types.MethodType(_stay_in_training, module)
    return out


def high_frequency_by_depth(model: nn.Module, images: torch.Tensor, *, bootstrap: int = 1000, seed: int = 0,
                            progress: bool = True) -> pd.DataFrame:
    """:func:`lib.analysis.fourier.high_frequency_by_depth` the authors' way: BatchNorm on each image's own statistics."""
    return fourier.high_frequency_by_depth(own_statistics(model), images, batch_size=1, bootstrap=bootstrap, seed=seed,
                                           progress=progress)


def high_frequency_trend(model: nn.Module, images: torch.Tensor, *, bootstrap: int = 1000, seed: int = 0,
                         progress: bool = True) -> pd.DataFrame:
    """:func:`lib.analysis.trend.high_frequency_trend` the authors' way: BatchNorm on each image's own statistics."""
    return trend.high_frequency_trend(own_statistics(model), images, batch_size=1, bootstrap=bootstrap, seed=seed,
                                      progress=progress)
