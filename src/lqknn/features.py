"""Feature extraction: a convolutional auto-encoder and two baseline encoders.

The first step of the method (Vindas et al. 2022, section 2.1): an auto-encoder is
trained, without labels, on every image of the pool (labelled and unlabelled), and
its latent vector becomes the feature vector of each sample. ``pca`` (principal
components of the pixels) and ``raw`` (flattened pixels) give the same output type,
as fast baselines and for data that are not images.

Images are float32 arrays of shape ``(N, C, H, W)`` with values in ``[0, 1]``.
Everything here is numpy in, numpy out; torch only appears inside.

Main entry points
-----------------
- :class:`AutoEncoderConfig` / :class:`ConvAutoEncoder`: the architecture.
- :func:`train_autoencoder`, :func:`encode`, :func:`reconstruct`,
  :func:`reconstruction_mse`, :func:`save_model`, :func:`load_model`.
- :class:`FeatureEncoder` (fit on the pool, transform any sample) and
  :func:`extract_features` (one call, any of the three methods).
- :func:`knn_feature_accuracy`: the feature-quality diagnostic.
- :func:`plot_reconstructions`, :func:`plot_loss_curves`: report figures.

References
----------
Vindas, Y., Roux, E., Guépié, B. K., Almar, M., Delachartre, P. (2022).
Semi-automatic data annotation based on feature-space projection and local quality
metrics: an application to cerebral emboli characterization. Medical Image
Analysis. Section 2.1, Fig. 3 and Table 1.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

# Idle OpenMP threads sleep instead of spinning: on a shared or busy CPU, spinning
# threads made 2-thread training 10-30x slower than 1 thread (measured on the
# project's 2-core machine). Read once, when torch's OpenMP runtime loads, so it
# only takes effect if torch is not imported yet; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # also in lqknn/__init__.py

import torch  # noqa: E402
from matplotlib.figure import Figure
from torch import nn
from tqdm.auto import tqdm

from lqknn._validation import check_array, check_float, check_int, check_labels

__all__ = [
    "TRAINING_DEFAULTS",
    "AutoEncoderConfig",
    "ConvAutoEncoder",
    "FeatureEncoder",
    "encode",
    "extract_features",
    "knn_feature_accuracy",
    "load_model",
    "plot_loss_curves",
    "plot_reconstructions",
    "reconstruct",
    "reconstruction_mse",
    "save_model",
    "train_autoencoder",
]

#: Training hyper-parameters recommended per data set (Adamax, MSE loss, batch 32).
#: Paper Table 1 was the starting point; measured here (``benchmarks/results/
#: features.md``): on MNIST 10k (5 epochs) lr 5e-3 reached a loss of 0.0071 against
#: 0.0107 for the paper's 5e-2 and 0.0108 for 1e-3, with the best 5-NN accuracy; on
#: synthetic HITS (6 epochs) the paper's weight decay 1e-2 stalls the loss at ~0.010
#: (and it rises again) while 1e-5 keeps decreasing (0.0057) with better 5-NN
#: accuracy. OrganCMNIST and digits could not be measured offline / were not swept:
#: they take the MNIST values (same architecture family); OrganCMNIST keeps the
#: paper's weight decay 1e-7.
TRAINING_DEFAULTS: dict[str, dict[str, float | int | str]] = {
    "mnist": {
        "epochs": 50,
        "batch_size": 32,
        "learning_rate": 5e-3,
        "weight_decay": 1e-5,
        "optimizer": "adamax",
    },
    "organcmnist": {
        "epochs": 50,
        "batch_size": 32,
        "learning_rate": 5e-3,
        "weight_decay": 1e-7,
        "optimizer": "adamax",
    },
    "hits": {
        "epochs": 50,
        "batch_size": 32,
        "learning_rate": 5e-3,
        "weight_decay": 1e-5,
        "optimizer": "adamax",
    },
    "digits": {
        "epochs": 50,
        "batch_size": 32,
        "learning_rate": 5e-3,
        "weight_decay": 1e-5,
        "optimizer": "adamax",
    },
}

_OPTIMIZERS = ("adamax", "adam", "adamw", "sgd")
_METHODS = ("autoencoder", "pca", "raw")
_SAVE_FORMAT = "lqknn.features.ConvAutoEncoder"
_SAVE_VERSION = 1


# --------------------------------------------------------------------------- config


def _check_shape3(value, name: str) -> tuple[int, int, int]:
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(
            f"{name} must be a (C, H, W) tuple of 3 integers, got {value!r}."
        ) from None
    if len(shape) != 3:
        raise ValueError(
            f"{name} must be a (C, H, W) tuple of 3 integers, got {value!r}."
        )
    return tuple(check_int(s, f"{name}[{i}]", low=1) for i, s in enumerate(shape))


@dataclass(frozen=True)
class AutoEncoderConfig:
    """Architecture of a :class:`ConvAutoEncoder`.

    Parameters
    ----------
    input_shape : tuple of 3 ints
        ``(C, H, W)`` of the images, channels first.
    channels : tuple of ints, default (16, 32, 64)
        Output channels of each stride-2 down-sampling block; one block per entry.
        The decoder mirrors them.
    latent_dim : int, default 32
        Size of the latent (feature) vector.
    kernel_size : int, default 3
        Odd kernel size of every (transposed) convolution.
    dropout : float in [0, 1), default 0.0
        Channel dropout (``Dropout2d``) after each encoder block, active during
        training only.
    negative_slope : float >= 0, default 0.01
        Slope of the LeakyReLU activations for negative inputs.

    Notes
    -----
    Each block maps a side ``s`` to ``ceil(s / 2)``, so the input height and width
    must be at least ``2 ** len(channels)`` (:attr:`min_input_size`). The decoder
    uses transposed convolutions whose output padding reproduces the encoder's
    intermediate sizes exactly, so the output has the input's exact shape for any
    (also odd or non-square) size.
    """

    input_shape: tuple[int, int, int]
    channels: tuple[int, ...] = (16, 32, 64)
    latent_dim: int = 32
    kernel_size: int = 3
    dropout: float = 0.0
    negative_slope: float = 0.01
    _sizes: tuple[tuple[int, int], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self):
        shape = _check_shape3(self.input_shape, "input_shape")
        try:
            channels = tuple(self.channels)
        except TypeError:
            raise TypeError(
                f"channels must be a sequence of positive integers, got {self.channels!r}."
            ) from None
        if not channels:
            raise ValueError("channels must hold at least one block, got ().")
        channels = tuple(
            check_int(c, f"channels[{i}]", low=1) for i, c in enumerate(channels)
        )
        check_int(self.latent_dim, "latent_dim", low=1)
        k = check_int(self.kernel_size, "kernel_size", low=1)
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {k}.")
        check_float(self.dropout, "dropout", low=0.0, high=1.0, high_inclusive=False)
        check_float(self.negative_slope, "negative_slope", low=0.0)
        min_size = 2 ** len(channels)
        _, h, w = shape
        if h < min_size or w < min_size:
            raise ValueError(
                f"input_shape {shape} is too small for {len(channels)} down-sampling "
                f"blocks: height and width must be at least 2**{len(channels)} = "
                f"{min_size}, i.e. input_shape (C, >={min_size}, >={min_size}). "
                "Use fewer channels entries or AutoEncoderConfig.default_for(shape)."
            )
        sizes = [(h, w)]
        for _ in channels:
            h, w = -(-h // 2), -(-w // 2)
            sizes.append((h, w))
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "_sizes", tuple(sizes))

    @property
    def n_blocks(self) -> int:
        """Number of stride-2 down-sampling blocks."""
        return len(self.channels)

    @property
    def min_input_size(self) -> int:
        """Smallest height and width this architecture accepts (``2**n_blocks``)."""
        return 2**self.n_blocks

    @property
    def spatial_sizes(self) -> tuple[tuple[int, int], ...]:
        """``(H, W)`` at the input and after each block (``n_blocks + 1`` entries)."""
        return self._sizes

    @property
    def flat_dim(self) -> int:
        """Length of the flattened output of the last encoder block."""
        h, w = self._sizes[-1]
        return self.channels[-1] * h * w

    @classmethod
    def default_for(
        cls, input_shape, *, latent_dim: int = 32, dropout: float = 0.0, **overrides
    ) -> AutoEncoderConfig:
        """Default architecture sized from the input shape.

        The number of blocks halves the smaller side down to about 4 pixels
        (``ceil(log2(min(H, W) / 4))``, clipped to 2..5 and to what the input allows);
        block ``i`` has ``16 * 2**i`` channels (capped at 256). This gives three
        blocks (16, 32, 64) for 28 x 28 (MNIST, MedMNIST; paper Fig. 3a), four
        blocks (16, 32, 64, 128) ending at 4 x 4 for 64 x 64 HITS spectrograms, and
        two blocks (16, 32) for 8 x 8 digits. Inputs under 2 x 2 pixels get one.

        Parameters
        ----------
        input_shape : tuple of 3 ints
            ``(C, H, W)``.
        latent_dim : int, default 32
        dropout : float, default 0.0
        **overrides
            ``channels``, ``kernel_size`` and/or ``negative_slope``: replace the
            sized defaults (e.g. ``channels=(32, 64)`` for two wider blocks).

        Returns
        -------
        AutoEncoderConfig
        """
        allowed = ("channels", "kernel_size", "negative_slope")
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown architecture parameter(s) {unknown}; allowed: "
                f"{list(allowed)} (plus latent_dim and dropout)."
            )
        c, h, w = _check_shape3(input_shape, "input_shape")
        side = min(h, w)
        wanted = math.ceil(math.log2(side / 4)) if side > 4 else 0
        allowed = int(math.floor(math.log2(side)))  # 2**n_blocks <= side
        n_blocks = max(1, min(max(wanted, 2), 5, allowed))
        if side < 2:
            raise ValueError(
                f"input_shape {(c, h, w)} is too small for a convolutional "
                "auto-encoder: height and width must be at least 2; use "
                "method='raw' or 'pca' for such data."
            )
        channels = tuple(min(16 * 2**i, 256) for i in range(n_blocks))
        return cls(
            **{
                "input_shape": (c, h, w),
                "channels": channels,
                "latent_dim": latent_dim,
                "dropout": dropout,
                **overrides,
            }
        )

    def to_dict(self) -> dict:
        """Plain-python dict (lists, ints, floats), for YAML / JSON / pickle."""
        out = asdict(self)
        out.pop("_sizes")
        out["input_shape"] = list(self.input_shape)
        out["channels"] = list(self.channels)
        return out

    @classmethod
    def from_dict(cls, params: dict) -> AutoEncoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict, got {type(params).__name__}.")
        known = {"input_shape", "channels", "latent_dim", "kernel_size", "dropout"}
        known |= {"negative_slope"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"unknown AutoEncoderConfig keys {unknown}; allowed: {sorted(known)}."
            )
        if "input_shape" not in params:
            raise ValueError("params must contain 'input_shape'.")
        kwargs = dict(params)
        kwargs["input_shape"] = tuple(kwargs["input_shape"])
        if "channels" in kwargs:
            kwargs["channels"] = tuple(kwargs["channels"])
        return cls(**kwargs)


# ---------------------------------------------------------------------- the model


class ConvAutoEncoder(nn.Module):
    """Convolutional auto-encoder in the spirit of the paper's Fig. 3.

    Encoder: ``n_blocks`` x [Conv2d(stride 2) -> BatchNorm2d -> LeakyReLU ->
    Dropout2d], flatten, Linear to ``latent_dim``. Decoder (mirrored): Linear,
    unflatten, ``n_blocks - 1`` x [ConvTranspose2d(stride 2) -> BatchNorm2d ->
    LeakyReLU], a last ConvTranspose2d to the input channels and a sigmoid. The
    transposed convolutions' output padding reproduces the encoder's sizes, so
    the output has exactly the input's ``(C, H, W)``.

    Parameters
    ----------
    config : AutoEncoderConfig

    Notes
    -----
    Complexity per image: ``O(sum_i C_i C_{i-1} k^2 H_i W_i)`` multiply-adds for
    each half; memory for the activations of one batch.
    """

    def __init__(self, config: AutoEncoderConfig):
        super().__init__()
        if not isinstance(config, AutoEncoderConfig):
            raise TypeError(
                f"config must be an AutoEncoderConfig, got {type(config).__name__}."
            )
        self.config = config
        k, pad = config.kernel_size, config.kernel_size // 2
        slope = config.negative_slope
        in_c = config.input_shape[0]
        chans = (in_c, *config.channels)
        sizes = config.spatial_sizes

        enc: list[nn.Module] = []
        for i in range(config.n_blocks):
            enc += [
                nn.Conv2d(chans[i], chans[i + 1], k, stride=2, padding=pad),
                nn.BatchNorm2d(chans[i + 1]),
                nn.LeakyReLU(slope),
            ]
            if config.dropout > 0:
                enc.append(nn.Dropout2d(config.dropout))
        enc += [nn.Flatten(), nn.Linear(config.flat_dim, config.latent_dim)]
        self.encoder = nn.Sequential(*enc)

        h_last, w_last = sizes[-1]
        dec: list[nn.Module] = [
            nn.Linear(config.latent_dim, config.flat_dim),
            nn.LeakyReLU(slope),
            nn.Unflatten(1, (chans[-1], h_last, w_last)),
        ]
        for i in range(config.n_blocks, 0, -1):
            (h_in, w_in), (h_out, w_out) = sizes[i], sizes[i - 1]
            out_pad = (h_out - (2 * h_in - 1), w_out - (2 * w_in - 1))
            dec.append(
                nn.ConvTranspose2d(
                    chans[i],
                    chans[i - 1],
                    k,
                    stride=2,
                    padding=pad,
                    output_padding=out_pad,
                )
            )
            if i > 1:
                dec += [nn.BatchNorm2d(chans[i - 1]), nn.LeakyReLU(slope)]
        dec.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*dec)

    def _check_input(self, x: torch.Tensor) -> None:
        expected = self.config.input_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"images must have shape (N, {expected[0]}, {expected[1]}, "
                f"{expected[2]}) for this auto-encoder, got {tuple(x.shape)}."
            )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent vectors, shape ``(N, latent_dim)``."""
        self._check_input(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructions in ``[0, 1]``, shape ``(N, C, H, W)``."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x``, same shape."""
        return self.decode(self.encode(x))


# ------------------------------------------------------------------------ helpers


def _check_images(images, name: str = "images", *, min_rows: int = 1) -> np.ndarray:
    """Float32 (N, C, H, W) images in [0, 1]."""
    arr = np.asarray(images) if not isinstance(images, np.ndarray) else images
    if arr.ndim == 4 and arr.shape[0] == 0 and min_rows > 0:
        raise ValueError(
            f"{name} is empty (shape {arr.shape}): there are no samples to "
            "train on or encode."
        )
    arr = check_array(arr, name, ndim=4, dtype=np.float32, min_rows=min_rows)
    if arr.size:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(
                f"{name} must have values in [0, 1] (the decoder ends with a "
                f"sigmoid), got min {lo:.4g} and max {hi:.4g}; rescale them first."
            )
    return np.ascontiguousarray(arr)


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


class _TorchSettings:
    """Set torch's thread count and determinism, restoring them afterwards."""

    def __init__(self, num_threads: int | None, deterministic: bool = True):
        self.num_threads = num_threads
        self.deterministic = deterministic

    def __enter__(self):
        self._threads = torch.get_num_threads()
        self._det = torch.are_deterministic_algorithms_enabled()
        self._det_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        if self.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._threads)
        torch.use_deterministic_algorithms(self._det, warn_only=self._det_warn)
        return False


def _check_model(model) -> ConvAutoEncoder:
    if not isinstance(model, ConvAutoEncoder):
        raise TypeError(f"model must be a ConvAutoEncoder, got {type(model).__name__}.")
    return model


def _batched_apply(model, images, batch_size, fn) -> np.ndarray:
    x = _check_images(images, min_rows=0)
    check_int(batch_size, "batch_size", low=1)
    expected = model.config.input_shape
    if tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"images must have shape (N, {expected[0]}, {expected[1]}, "
            f"{expected[2]}) for this auto-encoder, got {x.shape}."
        )
    was_training = model.training
    model.eval()
    outs = []
    try:
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch_size):
                xb = torch.from_numpy(x[start : start + batch_size])
                outs.append(fn(xb).numpy().astype(np.float32, copy=False))
    finally:
        model.train(was_training)
    if not outs:
        probe = torch.zeros((1, *expected))
        with torch.inference_mode():
            was_training = model.training
            model.eval()
            tail = tuple(fn(probe).shape[1:])
            model.train(was_training)
        return np.zeros((0, *tail), dtype=np.float32)
    return np.concatenate(outs, axis=0)


def encode(model: ConvAutoEncoder, images, batch_size: int = 256) -> np.ndarray:
    """Latent features of ``images``, computed in batches without gradient.

    Parameters
    ----------
    model : ConvAutoEncoder
    images : ndarray of shape (N, C, H, W), values in [0, 1]
        ``(C, H, W)`` must equal ``model.config.input_shape``.
    batch_size : int, default 256

    Returns
    -------
    features : ndarray of shape (N, latent_dim), float32

    Notes
    -----
    The model runs in eval mode (batch-norm running statistics, no dropout) and is
    returned to its previous mode. Time linear in N; memory one batch of
    activations plus the ``N x latent_dim`` output.
    """
    _check_model(model)
    return _batched_apply(model, images, batch_size, model.encode)


def reconstruct(model: ConvAutoEncoder, images, batch_size: int = 256) -> np.ndarray:
    """Reconstructions of ``images`` by the auto-encoder, same shape, float32.

    Parameters
    ----------
    model : ConvAutoEncoder
    images : ndarray of shape (N, C, H, W), values in [0, 1]
    batch_size : int, default 256

    Returns
    -------
    reconstructions : ndarray of shape (N, C, H, W), float32, values in [0, 1]
    """
    _check_model(model)
    return _batched_apply(model, images, batch_size, model)


def reconstruction_mse(model: ConvAutoEncoder, images, batch_size: int = 256) -> float:
    """Mean squared reconstruction error over all pixels of ``images`` (eval mode)."""
    x = _check_images(images)
    rec = reconstruct(model, x, batch_size=batch_size)
    return float(np.mean((rec.astype(np.float64) - x) ** 2))


# ----------------------------------------------------------------------- training


def _make_optimizer(name: str, params, lr: float, wd: float):
    if name == "adamax":
        return torch.optim.Adamax(params, lr=lr, weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9)


def _batches(n: int, batch_size: int, generator: torch.Generator | None):
    """Index batches; a trailing batch of one sample is merged into the previous
    one (batch norm needs two samples when the last feature map is 1 x 1)."""
    if generator is None:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=generator)
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        bounds.pop(-2)
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _nan_error(epoch: int, lr: float, where: str) -> ValueError:
    return ValueError(
        f"the training loss became NaN or infinite at epoch {epoch} ({where}); "
        f"the learning rate {lr:g} is probably too large: try a smaller "
        f"learning_rate, e.g. {lr / 10:g}."
    )


def train_autoencoder(
    images,
    config: AutoEncoderConfig | None = None,
    *,
    epochs: int = 50,
    batch_size: int = 32,
    learning_rate: float = 5e-3,
    weight_decay: float = 1e-5,
    optimizer: str = "adamax",
    validation_fraction: float = 0.0,
    early_stopping_patience: int | None = None,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = None,
) -> tuple[ConvAutoEncoder, pd.DataFrame]:
    """Train a convolutional auto-encoder on ``images`` with an MSE loss.

    Train on ALL the pool's images (labelled and unlabelled), never on a test
    split: the caller passes the pool only.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W), values in [0, 1]
        At least 2 images (batch norm needs two samples).
    config : AutoEncoderConfig, optional
        Architecture; default ``AutoEncoderConfig.default_for(images.shape[1:])``.
        Its ``input_shape`` must equal ``images.shape[1:]``.
    epochs : int >= 1, default 50
    batch_size : int >= 1, default 32
    learning_rate : float > 0, default 5e-3
        Paper Table 1 uses 5e-2 (MNIST), 5e-5 (OrganCMNIST), 5e-3 (HITS);
        :data:`TRAINING_DEFAULTS` has the values measured to converge here.
    weight_decay : float >= 0, default 1e-5
        L2 penalty passed to the optimizer.
    optimizer : {"adamax", "adam", "adamw", "sgd"}, default "adamax"
        ``sgd`` uses momentum 0.9.
    validation_fraction : float in [0, 1), default 0.0
        Fraction of ``images`` held out (seeded random choice) to compute
        ``val_loss`` after every epoch; the model then trains on the rest.
    early_stopping_patience : int >= 1, optional
        Stop when ``val_loss`` has not improved for this many epochs, and restore
        the weights of the best epoch. Needs ``validation_fraction > 0``.
    seed : int, default 0
        Seeds the weight initialisation, dropout, the validation split and the
        shuffle (a private ``torch.Generator``). Torch's global random state is
        restored afterwards. Same seed and thread count -> same model.
    progress : bool, default True
        Show a tqdm bar over epochs with the losses in its postfix.
    num_threads : int, optional
        Torch intra-op threads during training; default all cores available to
        the process. Restored afterwards.

    Returns
    -------
    model : ConvAutoEncoder
        On CPU, in eval mode.
    history : pandas.DataFrame
        One row per epoch run: ``epoch`` (1-based), ``train_loss`` (mean MSE over
        the epoch's batches, train mode), ``val_loss`` (eval-mode MSE on the
        held-out images, NaN without them) and ``seconds`` (wall time).

    Raises
    ------
    ValueError
        Empty or too small pool, images of the wrong shape or outside [0, 1], bad
        hyper-parameters, or a NaN / infinite loss (the message names the epoch
        and suggests a smaller learning rate).

    Notes
    -----
    Deterministic on CPU: ``torch.use_deterministic_algorithms(True)`` (warn-only)
    is on during training. Time ``O(epochs * N * cost per image)``; memory the
    images as one float32 tensor (shared with numpy) plus one batch of
    activations.

    References
    ----------
    Vindas et al. (2022), section 2.1 and Table 1.
    """
    x = _check_images(images)
    if x.shape[0] < 2:
        raise ValueError(
            f"images must hold at least 2 samples to train the auto-encoder "
            f"(batch norm needs two), got {x.shape[0]}."
        )
    if config is None:
        config = AutoEncoderConfig.default_for(x.shape[1:])
    elif not isinstance(config, AutoEncoderConfig):
        raise TypeError(
            f"config must be an AutoEncoderConfig or None, got {type(config).__name__}."
        )
    if tuple(x.shape[1:]) != config.input_shape:
        raise ValueError(
            f"images have shape {x.shape} but config.input_shape is "
            f"{config.input_shape}: expected images of shape (N, "
            f"{', '.join(map(str, config.input_shape))})."
        )
    epochs = check_int(epochs, "epochs", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    lr = check_float(learning_rate, "learning_rate", low=0.0, low_inclusive=False)
    wd = check_float(weight_decay, "weight_decay", low=0.0)
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}.")
    vf = check_float(
        validation_fraction, "validation_fraction", low=0.0, high=1.0,
        high_inclusive=False,
    )  # fmt: skip
    if early_stopping_patience is not None:
        early_stopping_patience = check_int(
            early_stopping_patience, "early_stopping_patience", low=1
        )
        if vf == 0.0:
            raise ValueError(
                "early_stopping_patience needs a held-out set: set "
                "validation_fraction > 0 (e.g. 0.1)."
            )
    seed = check_int(seed, "seed", low=0)
    if num_threads is None:
        num_threads = _default_threads()
    num_threads = check_int(num_threads, "num_threads", low=1)

    n = x.shape[0]
    n_val = int(round(vf * n))
    if vf > 0 and (n_val < 1 or n - n_val < 2):
        raise ValueError(
            f"validation_fraction={vf} of {n} images leaves {n_val} validation and "
            f"{n - n_val} training images; need at least 1 and 2."
        )
    data = torch.from_numpy(x)

    with _TorchSettings(num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        if n_val:
            perm = torch.randperm(n, generator=gen)
            val_x, train_x = data[perm[:n_val]], data[perm[n_val:]]
        else:
            val_x, train_x = None, data
        model = ConvAutoEncoder(config)
        opt = _make_optimizer(optimizer, model.parameters(), lr, wd)
        loss_fn = nn.MSELoss()
        rows = []
        best_val, best_state, since_best = math.inf, None, 0
        bar = tqdm(
            range(1, epochs + 1),
            desc="auto-encoder",
            unit="epoch",
            disable=not progress,
        )
        for epoch in bar:
            t0 = time.perf_counter()
            model.train()
            total, count = 0.0, 0
            for b, idx in enumerate(_batches(train_x.shape[0], batch_size, gen), 1):
                xb = train_x[idx]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xb), xb)
                if not torch.isfinite(loss):
                    bar.close()
                    raise _nan_error(epoch, lr, f"batch {b}")
                loss.backward()
                opt.step()
                total += float(loss.detach()) * xb.shape[0]
                count += xb.shape[0]
            train_loss = total / count
            val_loss = math.nan
            if val_x is not None:
                model.eval()
                with torch.inference_mode():
                    sq = 0.0
                    for idx in _batches(val_x.shape[0], 1024, None):
                        xb = val_x[idx]
                        sq += float(((model(xb) - xb) ** 2).sum())
                val_loss = sq / val_x.numel()
                if not math.isfinite(val_loss):
                    bar.close()
                    raise _nan_error(epoch, lr, "validation")
            seconds = time.perf_counter() - t0
            rows.append((epoch, train_loss, val_loss, seconds))
            post = {"loss": f"{train_loss:.5f}"}
            if val_x is not None:
                post["val"] = f"{val_loss:.5f}"
            bar.set_postfix(post)
            if early_stopping_patience is not None:
                if val_loss < best_val:
                    best_val, since_best = val_loss, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
                    if since_best >= early_stopping_patience:
                        break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "train_loss", "val_loss", "seconds"])
    history["epoch"] = history["epoch"].astype(np.int64)
    return model, history


# ------------------------------------------------------------------- persistence


def save_model(model: ConvAutoEncoder, config: AutoEncoderConfig | None = None) -> dict:
    """Picklable dict holding the architecture and the weights of ``model``.

    Parameters
    ----------
    model : ConvAutoEncoder
    config : AutoEncoderConfig, optional
        Defaults to ``model.config``; when given it must equal it.

    Returns
    -------
    state : dict
        ``{"format", "version", "config": config.to_dict(), "state_dict":
        {name: ndarray}}`` -- plain python and numpy objects only, so a Kedro
        ``PickleDataset`` (or ``joblib``) can store it and :func:`load_model` can
        rebuild the model without the training code.
    """
    _check_model(model)
    if config is None:
        config = model.config
    elif config != model.config:
        raise ValueError(
            f"config {config} does not match the model's architecture {model.config}."
        )
    return {
        "format": _SAVE_FORMAT,
        "version": _SAVE_VERSION,
        "config": config.to_dict(),
        "state_dict": {
            k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()
        },
    }


def load_model(state: dict) -> ConvAutoEncoder:
    """Rebuild a :class:`ConvAutoEncoder` (eval mode) from :func:`save_model`'s dict."""
    if not isinstance(state, dict) or state.get("format") != _SAVE_FORMAT:
        raise ValueError(
            "state must be a dict produced by lqknn.features.save_model "
            f"(format {_SAVE_FORMAT!r}), got {type(state).__name__}"
            + (
                f" with format {state.get('format')!r}"
                if isinstance(state, dict)
                else ""
            )
            + "."
        )
    if state.get("version") != _SAVE_VERSION:
        raise ValueError(
            f"unsupported saved-model version {state.get('version')!r}; "
            f"this lqknn reads version {_SAVE_VERSION}."
        )
    model = ConvAutoEncoder(AutoEncoderConfig.from_dict(state["config"]))
    weights = {
        k: torch.as_tensor(np.asarray(v)) for k, v in state["state_dict"].items()
    }
    model.load_state_dict(weights)
    model.eval()
    return model


# ------------------------------------------------------------- generic encoders


class FeatureEncoder:
    """Fit a feature encoder on the pool, then transform any sample.

    Parameters
    ----------
    method : {"autoencoder", "pca", "raw"}, default "autoencoder"
        ``autoencoder``: latent vector of a :class:`ConvAutoEncoder` trained with
        :func:`train_autoencoder`. ``pca``: scikit-learn ``PCA(whiten=False)`` of
        the flattened pixels. ``raw``: the flattened pixels themselves.
    n_components : int, optional
        Output dimension for ``pca`` (default 32) and latent size of the default
        auto-encoder architecture (default 32); ignored by ``raw`` (its dimension
        is ``C*H*W``), so one parameter file can serve every method. Must agree
        with ``config.latent_dim`` when a config is given.
    seed : int, default 0
        Seed of the auto-encoder's training and of PCA's randomized solver.
    **train_kwargs
        Passed to :func:`train_autoencoder` (``config``, ``epochs``,
        ``learning_rate``, ...); ignored by ``pca`` and ``raw``, so one parameter
        set can switch methods.

    Attributes
    ----------
    model_ : ConvAutoEncoder or sklearn.decomposition.PCA or None
    history_ : pandas.DataFrame or None
        Training history of the auto-encoder.
    n_features_out_ : int
    input_shape_ : tuple of 3 ints
    """

    def __init__(
        self,
        method: str = "autoencoder",
        *,
        n_components: int | None = None,
        seed: int = 0,
        **train_kwargs,
    ):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
        if n_components is not None:
            n_components = check_int(n_components, "n_components", low=1)
        config = train_kwargs.get("config")
        if (
            config is not None
            and n_components is not None
            and isinstance(config, AutoEncoderConfig)
            and config.latent_dim != n_components
        ):
            raise ValueError(
                f"n_components={n_components} disagrees with config.latent_dim="
                f"{config.latent_dim}; give only one of them."
            )
        self.method = method
        self.n_components = n_components
        self.seed = check_int(seed, "seed", low=0)
        self.train_kwargs = train_kwargs
        self.model_ = None
        self.history_ = None
        self.input_shape_: tuple[int, int, int] | None = None
        self.n_features_out_: int | None = None

    def fit(self, images) -> FeatureEncoder:
        """Fit on ``images`` (N, C, H, W) -- the pool only. Returns ``self``."""
        from sklearn.decomposition import PCA

        x = _check_images(images)
        self.input_shape_ = tuple(int(s) for s in x.shape[1:])
        d = int(np.prod(self.input_shape_))
        if self.method == "raw":
            self.model_, self.n_features_out_ = None, d
        elif self.method == "pca":
            k = 32 if self.n_components is None else self.n_components
            if k > min(x.shape[0], d):
                raise ValueError(
                    f"n_components={k} must be <= min(n_samples, n_pixels) = "
                    f"min({x.shape[0]}, {d}) for method='pca'."
                )
            pca = PCA(n_components=k, whiten=False, random_state=self.seed)
            pca.fit(x.reshape(x.shape[0], -1))
            self.model_, self.n_features_out_ = pca, k
        else:
            kwargs = dict(self.train_kwargs)
            if kwargs.get("config") is None:
                kwargs["config"] = AutoEncoderConfig.default_for(
                    self.input_shape_,
                    latent_dim=32 if self.n_components is None else self.n_components,
                )
            model, history = train_autoencoder(x, seed=self.seed, **kwargs)
            self.model_, self.history_ = model, history
            self.n_features_out_ = model.config.latent_dim
        return self

    def transform(self, images, batch_size: int = 256) -> np.ndarray:
        """Features of ``images``, shape (N, ``n_features_out_``), float32."""
        if self.input_shape_ is None:
            raise ValueError("this FeatureEncoder is not fitted yet; call fit first.")
        x = _check_images(images, min_rows=0)
        if tuple(x.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"images must have shape (N, {', '.join(map(str, self.input_shape_))})"
                f" like the fitted ones, got {x.shape}."
            )
        flat = x.reshape(x.shape[0], -1)
        if self.method == "raw":
            return flat.astype(np.float32, copy=True)
        if self.method == "pca":
            if flat.shape[0] == 0:
                return np.zeros((0, self.n_features_out_), dtype=np.float32)
            return self.model_.transform(flat).astype(np.float32)
        return encode(self.model_, x, batch_size=batch_size)

    def fit_transform(self, images) -> np.ndarray:
        """``fit(images).transform(images)``."""
        return self.fit(images).transform(images)


def extract_features(
    images,
    method: str = "autoencoder",
    *,
    n_components: int | None = None,
    seed: int = 0,
    fit_mask=None,
    **train_kwargs,
):
    """Features of every image, the encoder fitted on the pool only.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W), values in [0, 1]
    method : {"autoencoder", "pca", "raw"}, default "autoencoder"
        See :class:`FeatureEncoder`.
    n_components : int, optional
        PCA dimension / auto-encoder latent size (default 32); ignored by ``raw``.
    seed : int, default 0
    fit_mask : ndarray of bool, shape (N,), optional
        Images the encoder is fitted on (the pool); default all. Features are
        returned for ALL images, so test samples get features from an encoder that
        never saw them.
    **train_kwargs
        Passed to :func:`train_autoencoder` (``config``, ``epochs``, ...);
        ignored by ``pca`` and ``raw``.

    Returns
    -------
    features : ndarray of shape (N, d), float32
        ``d`` = latent size, ``n_components`` or ``C*H*W``.
    model : ConvAutoEncoder, sklearn PCA or None (``raw``)
    history : pandas.DataFrame or None
        Auto-encoder training history; None for ``pca`` and ``raw``.

    Examples
    --------
    >>> feats, model, hist = extract_features(
    ...     images, "autoencoder", fit_mask=samples["split"].eq("pool").to_numpy()
    ... )  # doctest: +SKIP
    """
    x = _check_images(images)
    if fit_mask is None:
        fit_x = x
    else:
        mask = np.asarray(fit_mask)
        if mask.dtype != bool or mask.shape != (x.shape[0],):
            raise ValueError(
                f"fit_mask must be a boolean array of shape ({x.shape[0]},), got "
                f"dtype {mask.dtype} and shape {mask.shape}."
            )
        if not mask.any():
            raise ValueError(
                "fit_mask selects no image: the pool is empty, nothing to fit the "
                "encoder on."
            )
        fit_x = x[mask]
    enc = FeatureEncoder(method, n_components=n_components, seed=seed, **train_kwargs)
    enc.fit(fit_x)
    return enc.transform(x), enc.model_, enc.history_


def encoder_to_state(encoder: FeatureEncoder) -> dict:
    """Picklable dict of a fitted :class:`FeatureEncoder` (any method).

    ``{"method", "seed", "n_components", "input_shape", "n_features_out",
    "autoencoder": save_model(...) or None, "pca": fitted PCA or None}``; the
    auto-encoder part holds only plain python and numpy (see :func:`save_model`).
    """
    if encoder.input_shape_ is None:
        raise ValueError("the FeatureEncoder is not fitted yet; call fit first.")
    return {
        "method": encoder.method,
        "seed": encoder.seed,
        "n_components": encoder.n_components,
        "input_shape": list(encoder.input_shape_),
        "n_features_out": encoder.n_features_out_,
        "autoencoder": save_model(encoder.model_)
        if encoder.method == "autoencoder"
        else None,
        "pca": encoder.model_ if encoder.method == "pca" else None,
    }


def encoder_from_state(state: dict) -> FeatureEncoder:
    """Rebuild a fitted :class:`FeatureEncoder` from :func:`encoder_to_state`."""
    if not isinstance(state, dict) or state.get("method") not in _METHODS:
        raise ValueError(
            "state must be a dict produced by lqknn.features.encoder_to_state; "
            "re-run the feature_extraction pipeline to rebuild it."
        )
    enc = FeatureEncoder(
        state["method"], n_components=state.get("n_components"), seed=state["seed"]
    )
    enc.input_shape_ = tuple(int(s) for s in state["input_shape"])
    enc.n_features_out_ = int(state["n_features_out"])
    if state["method"] == "autoencoder":
        enc.model_ = load_model(state["autoencoder"])
    elif state["method"] == "pca":
        enc.model_ = state["pca"]
    return enc


# -------------------------------------------------------------------- diagnostic


def knn_feature_accuracy(
    features,
    labels,
    k: int = 5,
    n_splits: int = 5,
    seed: int = 0,
    n_jobs: int | None = None,
) -> float:
    """Stratified k-fold accuracy of a k-NN classifier on the labelled samples.

    A quick measure of how well the features separate the classes: samples with
    ``label >= 0`` are split into ``n_splits`` stratified folds (shuffled with
    ``seed``); each fold is classified by a Euclidean ``k``-nearest-neighbour vote
    (scikit-learn ``KNeighborsClassifier``, uniform weights) of the other folds.

    Parameters
    ----------
    features : ndarray of shape (N, d)
    labels : ndarray of shape (N,), int; -1 = unlabelled (ignored)
    k : int, default 5
    n_splits : int, default 5
    seed : int, default 0
    n_jobs : int, optional
        Folds run in parallel through joblib.

    Returns
    -------
    accuracy : float in [0, 1]
        Mean accuracy over the folds.

    Notes
    -----
    Time ``O(L^2 d / n_splits)`` per fold for ``L`` labelled samples with brute
    force search (scikit-learn picks a tree for small ``d``); memory ``O(L d)``.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    feats = check_array(features, "features", ndim=2, dtype=np.float64)
    y = check_labels(labels, "labels", n_samples=feats.shape[0])
    k = check_int(k, "k", low=1)
    n_splits = check_int(n_splits, "n_splits", low=2)
    seed = check_int(seed, "seed", low=0)
    mask = y >= 0
    feats, y = feats[mask], y[mask]
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        raise ValueError(
            f"labels must contain at least 2 classes among labelled samples "
            f"(label >= 0), got {classes.size}."
        )
    if counts.max() < n_splits:
        raise ValueError(
            f"n_splits={n_splits} is larger than the largest class "
            f"({counts.max()} labelled samples); lower n_splits."
        )
    min_train = y.size - int(np.ceil(y.size / n_splits))
    if k > min_train:
        raise ValueError(
            f"k={k} is larger than the smallest training fold ({min_train} "
            f"samples); lower k or label more samples."
        )
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    scores = cross_val_score(
        KNeighborsClassifier(n_neighbors=k), feats, y, cv=cv, n_jobs=n_jobs
    )
    return float(np.mean(scores))


# ------------------------------------------------------------------------ figures


def _as_display(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) -> something imshow shows: grey for 1 channel, RGB for 3."""
    if img.shape[0] == 3:
        return np.clip(np.transpose(img, (1, 2, 0)), 0, 1), None
    return img[0], "gray"


def plot_reconstructions(
    images,
    reconstructions,
    labels=None,
    class_names: Sequence[str] | None = None,
    n_per_class: int = 3,
    seed: int = 0,
) -> Figure:
    """Figure of inputs next to their reconstructions, a few per class.

    One row per class present among the labelled samples (or a single row
    "unlabelled" when none is labelled); each row shows ``n_per_class`` pairs
    (input, reconstruction), chosen at random with ``seed``. Images with 1
    channel are drawn in grey, 3 channels in RGB, others by their first channel.

    Parameters
    ----------
    images, reconstructions : ndarray of shape (N, C, H, W)
    labels : ndarray of shape (N,), int, optional; -1 = unlabelled
    class_names : sequence of str, optional
        ``class_names[c]`` names class id ``c``.
    n_per_class : int, default 3
    seed : int, default 0

    Returns
    -------
    matplotlib.figure.Figure
    """
    x = check_array(images, "images", ndim=4, dtype=np.float32)
    r = check_array(reconstructions, "reconstructions", ndim=4, dtype=np.float32)
    if r.shape != x.shape:
        raise ValueError(
            f"reconstructions must have the shape of images {x.shape}, got {r.shape}."
        )
    n_per_class = check_int(n_per_class, "n_per_class", low=1)
    y = (
        np.full(x.shape[0], -1, dtype=np.int64)
        if labels is None
        else check_labels(labels, "labels", n_samples=x.shape[0])
    )
    rng = np.random.default_rng(seed)
    groups = [int(c) for c in np.unique(y[y >= 0])] or [-1]
    if class_names is not None:
        class_names = list(class_names)
        if groups[0] >= 0 and max(groups) >= len(class_names):
            raise ValueError(
                f"class_names has {len(class_names)} entries but labels go up to "
                f"{max(groups)}."
            )
    n_rows, n_cols = len(groups), 2 * n_per_class
    fig = Figure(figsize=(1.3 * n_cols + 1.2, 1.4 * n_rows + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for row, g in enumerate(groups):
        idx = np.flatnonzero(y == g) if g >= 0 else np.arange(x.shape[0])
        chosen = np.sort(
            rng.choice(idx, size=min(n_per_class, idx.size), replace=False)
        )
        if g < 0:
            name = "unlabelled"
        else:
            name = class_names[g] if class_names is not None else f"class {g}"
        for j in range(n_per_class):
            for half, src in enumerate((x, r)):
                ax = axes[row, 2 * j + half]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < chosen.size:
                    img, cmap = _as_display(src[chosen[j]])
                    ax.imshow(img, cmap=cmap, vmin=0, vmax=1, aspect="auto")
                else:
                    ax.set_axis_off()
                if row == 0:
                    ax.set_title("input" if half == 0 else "reconstruction", fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("Auto-encoder: inputs and reconstructions")
    return fig


def plot_loss_curves(history: pd.DataFrame) -> Figure:
    """Figure of the training (and validation) MSE per epoch, log scale.

    Parameters
    ----------
    history : pandas.DataFrame
        As returned by :func:`train_autoencoder` (columns ``epoch``,
        ``train_loss`` and optionally ``val_loss``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(history, pd.DataFrame):
        raise TypeError(f"history must be a DataFrame, got {type(history).__name__}.")
    missing = {"epoch", "train_loss"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks column(s) {sorted(missing)}.")
    if history.empty:
        raise ValueError("history is empty: no epoch to plot.")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(history["epoch"], history["train_loss"], marker="o", ms=3, label="train")
    if "val_loss" in history and history["val_loss"].notna().any():
        ax.plot(history["epoch"], history["val_loss"], marker="s", ms=3, label="val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE loss")
    if (history["train_loss"] > 0).all():
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("Auto-encoder training loss")
    return fig
