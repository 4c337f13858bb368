"""CNN classifiers and their training loop, for images with propagated labels.

Two networks are built from parameters (:class:`CNNConfig`, :func:`build_cnn`):

- ``"mnist"``: the paper's 28 x 28 network (Fig. 7a), which is the classic PyTorch
  MNIST example: two 5 x 5 convolutions with 10 and 20 channels, each followed by
  2 x 2 max-pooling and ReLU, channel dropout (``Dropout2d``) after the second
  convolution, a 50-unit hidden layer, dropout, and one output per class. Sizes are
  computed from the input shape (any ``H, W >= 16``).
- ``"spectrogram"``: a network sized for 64 x 64 HITS spectrograms: a few blocks of
  3 x 3 convolution, batch normalisation, ReLU and 2 x 2 max-pooling (pooling stops
  once a side reaches 1, so 8 x 8 digits work too), global average pooling,
  dropout, a hidden layer and the output layer. The paper's Fig. 7b is only shown
  as a drawing; this network has the same role, not necessarily the same layers.

:func:`train_classifier` trains one of them on the labelled samples of a data set
(label -1 = unlabelled, ignored) with a loss from :mod:`lqknn.losses`; it is seeded
and deterministic on CPU, keeps the last-epoch model (no selection on test data),
and reports a per-epoch history. :func:`predict` and :func:`predict_proba` apply a
trained model in batches.

References: Vindas et al. (2022), section 4.3 and Table 7; METHOD.md section 7.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import matthews_corrcoef
from torch import nn
from tqdm.auto import tqdm

from lqknn._validation import check_array, check_float, check_int, check_labels
from lqknn.losses import make_loss

__all__ = [
    "ARCHITECTURES",
    "OPTIMIZERS",
    "PAPER_TRAINING_PARAMS",
    "TRAINING_DEFAULTS",
    "CNNConfig",
    "TrainingResult",
    "build_cnn",
    "default_training_params",
    "predict",
    "predict_proba",
    "train_classifier",
]

#: Network names accepted by :class:`CNNConfig`.
ARCHITECTURES: tuple[str, ...] = ("auto", "mnist", "spectrogram")
#: Optimizer names accepted by :func:`train_classifier`.
OPTIMIZERS: tuple[str, ...] = ("adamax", "adam", "sgd")

#: Recommended training parameters per data set for CPU runs (keys of
#: :func:`train_classifier`), measured in ``benchmarks/results/classification.md``:
#:
#: - MNIST (paper: Adamax, lr 7e-3, 100 epochs): 800 labelled images reach ~92 %
#:   test accuracy after 13-15 epochs and 8,000 reach ~97 % after 5, so 15 epochs
#:   of batch 64 (faster per image than 32 on CPU) keep the paper's optimizer
#:   and learning rate at 15 % of its cost;
#: - OrganCMNIST: the paper's settings (batch 32, lr 7e-3, weight decay 1e-5)
#:   with 20 epochs (same network and size as MNIST; not measured here: the data
#:   set cannot be downloaded on this machine);
#: - HITS (paper: 50 epochs, lr 2e-2 for CE, 1e-3 for GCE): on synthetic HITS
#:   (train 7 subjects, test 3) the spectrogram network reaches only ~55 % test
#:   accuracy after 12 epochs at lr 1e-3 (CE and GCE; on an earlier synthetic
#:   set GCE stayed at chance for 8 epochs), and 77-81 % at 5e-3 and 2e-2, with
#:   larger epoch-to-epoch swings at 2e-2; hence 15 epochs at lr 5e-3 for both
#:   losses;
#: - digits (8 x 8, scikit-learn): 30 epochs at lr 7e-3 (140 labelled images
#:   still improve until ~25 epochs).
#:
#: The paper's own settings are in ``PAPER_TRAINING_PARAMS``.
TRAINING_DEFAULTS: dict[str, dict] = {
    "mnist": {
        "optimizer": "adamax",
        "epochs": 15,
        "batch_size": 64,
        "learning_rate": 7e-3,
        "weight_decay": 1e-7,
    },
    "organcmnist": {
        "optimizer": "adamax",
        "epochs": 20,
        "batch_size": 32,
        "learning_rate": 7e-3,
        "weight_decay": 1e-5,
    },
    "hits": {
        "optimizer": "adamax",
        "epochs": 15,
        "batch_size": 32,
        "learning_rate": 5e-3,
        "weight_decay": 1e-7,
    },
    "digits": {
        "optimizer": "adamax",
        "epochs": 30,
        "batch_size": 32,
        "learning_rate": 7e-3,
        "weight_decay": 1e-7,
    },
}

#: The paper's Table 7 (experiment 3; HITS uses lr 2e-2 with CE and 1e-3 with
#: GCE). The MNIST batch size is not given in the table; 32 is assumed.
PAPER_TRAINING_PARAMS: dict[str, dict] = {
    "mnist": {
        "optimizer": "adamax",
        "epochs": 100,
        "batch_size": 32,
        "learning_rate": 7e-3,
        "weight_decay": 1e-7,
    },
    "organcmnist": {
        "optimizer": "adamax",
        "epochs": 150,
        "batch_size": 32,
        "learning_rate": 7e-3,
        "weight_decay": 1e-5,
    },
    "hits": {
        "optimizer": "adamax",
        "epochs": 50,
        "batch_size": 32,
        "learning_rate": 1e-3,
        "weight_decay": 1e-7,
    },
}


def default_training_params(dataset: str, *, paper: bool = False) -> dict:
    """Return a copy of the recommended training parameters for ``dataset``.

    Parameters
    ----------
    dataset : {"mnist", "organcmnist", "hits", "digits"}
        Data set name (``"synthetic_hits"`` maps to ``"hits"``).
    paper : bool, default False
        Return the paper's Table 7 settings instead of the CPU defaults
        (not available for ``"digits"``).

    Returns
    -------
    dict
        Keys ``optimizer``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``weight_decay``, ready to pass to :func:`train_classifier`.
    """
    table = PAPER_TRAINING_PARAMS if paper else TRAINING_DEFAULTS
    key = "hits" if dataset == "synthetic_hits" else dataset
    if key not in table:
        raise ValueError(f"dataset must be one of {sorted(table)}, got {dataset!r}.")
    return dict(table[key])


@dataclass(frozen=True)
class CNNConfig:
    """Parameters of the classification network.

    Parameters
    ----------
    architecture : {"auto", "mnist", "spectrogram"}, default "auto"
        ``"mnist"``: the paper's 28 x 28 network (needs ``H, W >= 16``);
        ``"spectrogram"``: the convolution-block network with global pooling;
        ``"auto"``: ``"mnist"`` when ``16 <= H, W <= 32``, else ``"spectrogram"``.
    hidden_units : int, default 50
        Width of the hidden fully connected layer.
    dropout : float, default 0.5
        Dropout probability before the output layer (both networks).
    conv_dropout : float, default 0.5
        ``Dropout2d`` probability after the second convolution (``"mnist"``).
    channels : tuple of int, default (8, 16, 32)
        Output channels of the convolution blocks (``"spectrogram"``). (16, 32,
        64) costs about 3 times more per 64 x 64 image on CPU (see
        ``benchmarks/results/classification.md``).
    batch_norm : bool, default True
        Batch normalisation in the convolution blocks (``"spectrogram"``).
    """

    architecture: str = "auto"
    hidden_units: int = 50
    dropout: float = 0.5
    conv_dropout: float = 0.5
    channels: tuple[int, ...] = field(default=(8, 16, 32))
    batch_norm: bool = True

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {list(ARCHITECTURES)}, "
                f"got {self.architecture!r}."
            )
        check_int(self.hidden_units, "hidden_units", low=1)
        check_float(self.dropout, "dropout", low=0.0, high=1.0, high_inclusive=False)
        check_float(
            self.conv_dropout, "conv_dropout", low=0.0, high=1.0, high_inclusive=False
        )
        channels = tuple(self.channels)
        if not channels:
            raise ValueError("channels must name at least one convolution block.")
        for c in channels:
            check_int(c, "channels[i]", low=1)
        object.__setattr__(self, "channels", channels)
        if not isinstance(self.batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {self.batch_norm!r}.")


def _resolve_architecture(config: CNNConfig, height: int, width: int) -> str:
    if config.architecture != "auto":
        return config.architecture
    small = 16 <= min(height, width) and max(height, width) <= 32
    return "mnist" if small else "spectrogram"


def _mnist_cnn(
    channels: int, height: int, width: int, n_classes: int, config: CNNConfig
) -> nn.Sequential:
    if min(height, width) < 16:
        raise ValueError(
            f"the 'mnist' network needs images of at least 16 x 16 pixels, got "
            f"{height} x {width}; use architecture='spectrogram' for smaller images."
        )
    h = ((height - 4) // 2 - 4) // 2
    w = ((width - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(channels, 10, kernel_size=5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(10, 20, kernel_size=5),
        nn.Dropout2d(config.conv_dropout),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(20 * h * w, config.hidden_units),
        nn.ReLU(),
        nn.Dropout(config.dropout),
        nn.Linear(config.hidden_units, n_classes),
    )


def _spectrogram_cnn(
    channels: int, height: int, width: int, n_classes: int, config: CNNConfig
) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in, h, w = channels, height, width
    for c_out in config.channels:
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not config.batch_norm))
        if config.batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU())
        if min(h, w) >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c_in = c_out
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(config.dropout),
        nn.Linear(c_in, config.hidden_units),
        nn.ReLU(),
        nn.Dropout(config.dropout),
        nn.Linear(config.hidden_units, n_classes),
    ]
    return nn.Sequential(*layers)


def build_cnn(
    input_shape: tuple[int, int, int], n_classes: int, config: CNNConfig | None = None
) -> nn.Module:
    """Build an untrained classification CNN for images of ``input_shape``.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
        Channels, height and width of one image.
    n_classes : int
        Number of outputs (>= 2), one logit per class.
    config : CNNConfig, optional
        Network parameters; default ``CNNConfig()`` (``architecture="auto"``).

    Returns
    -------
    torch.nn.Module
        Maps a float tensor (B, C, H, W) to logits (B, n_classes). Weights are drawn
        from torch's global generator: seed it (or use :func:`train_classifier`,
        which does) for reproducible weights.

    Notes
    -----
    For 28 x 28 inputs the ``"mnist"`` network has 21,840 parameters for 10
    classes; forward cost is O(H W) per image for both networks.
    """
    config = CNNConfig() if config is None else config
    if not isinstance(config, CNNConfig):
        raise TypeError(f"config must be a CNNConfig, got {type(config).__name__}.")
    if len(tuple(input_shape)) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}.")
    channels, height, width = (
        check_int(v, name, low=1)
        for v, name in zip(input_shape, ("channels", "height", "width"), strict=True)
    )
    n_classes = check_int(n_classes, "n_classes", low=2)
    arch = _resolve_architecture(config, height, width)
    builder = _mnist_cnn if arch == "mnist" else _spectrogram_cnn
    return builder(channels, height, width, n_classes, config)


@dataclass
class TrainingResult:
    """What :func:`train_classifier` returns.

    Attributes
    ----------
    model : torch.nn.Module
        The last-epoch model, in evaluation mode.
    history : pandas.DataFrame
        One row per epoch: ``epoch`` (1-based), ``train_loss`` (mean loss over the
        epoch's samples), ``seconds``, and with test data ``test_accuracy`` and
        ``test_mcc`` (monitoring only: nothing is selected on them).
    test_predictions : ndarray of shape (n_test,) or None
        Last-epoch predicted class of every test image.
    n_train : int
        Number of labelled samples trained on.
    seconds : float
        Wall time of the training, in seconds.
    """

    model: nn.Module
    history: pd.DataFrame
    test_predictions: np.ndarray | None
    n_train: int
    seconds: float


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _make_optimizer(
    name: str, params, learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "adamax":
        return torch.optim.Adamax(params, lr=learning_rate, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
    return torch.optim.SGD(
        params, lr=learning_rate, momentum=0.9, weight_decay=weight_decay
    )


def _batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a last batch of one joins the previous.

    Batch normalisation cannot train on a single sample once the feature maps are
    1 x 1, so a trailing batch of size 1 is merged into the one before it.
    """
    chunks = list(torch.split(order, batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    return chunks


def _check_images(images, name: str) -> np.ndarray:
    arr = check_array(images, name, ndim=4, dtype=np.float32)
    if min(arr.shape[1:]) < 1:
        raise ValueError(f"{name} must have shape (N, C, H, W) with C, H, W >= 1.")
    return np.ascontiguousarray(arr)


def train_classifier(
    images,
    labels,
    *,
    n_classes: int,
    config: CNNConfig | None = None,
    loss: str = "ce",
    loss_params: dict | None = None,
    optimizer: str = "adamax",
    epochs: int = 20,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-7,
    seed: int = 0,
    test_images=None,
    test_labels=None,
    progress: bool = True,
    num_threads: int | None = None,
) -> TrainingResult:
    """Train a CNN on the labelled samples of an image set.

    Parameters
    ----------
    images : ndarray of shape (N, C, H, W)
        Images, float32 in [0, 1].
    labels : ndarray of shape (N,)
        Class ids ``0..n_classes-1``; -1 marks unlabelled samples, which are not
        used.
    n_classes : int
        Number of classes (>= 2); a label >= ``n_classes`` is an error.
    config : CNNConfig, optional
        Network parameters (default ``CNNConfig()``).
    loss : {"ce", "gce", "sce"}, default "ce"
        Loss name, see :func:`lqknn.losses.make_loss`; ``loss_params`` are passed
        to it (e.g. ``{"q": 0.7}``).
    optimizer : {"adamax", "adam", "sgd"}, default "adamax"
        Optimizer (SGD uses momentum 0.9).
    epochs : int, default 20
        Number of passes over the labelled samples.
    batch_size : int, default 32
        Mini-batch size (a trailing batch of one sample joins the previous batch).
    learning_rate : float, default 1e-3
        Step size (> 0).
    weight_decay : float, default 1e-7
        L2 penalty (>= 0) given to the optimizer.
    seed : int, default 0
        Seeds the weights, the shuffling and the dropout masks. Torch's global
        random state is restored afterwards.
    test_images, test_labels : ndarray, optional
        Test set (both or neither); test labels of -1 are predicted but left out of
        the per-epoch accuracy and MCC.
    progress : bool, default True
        Show a tqdm bar over epochs.
    num_threads : int, optional
        Torch CPU threads during the training (restored afterwards); default:
        torch's current setting. Use 1 in parallel workers, and on a machine
        whose cores other processes also use: on the shared 2-core machine, 2
        threads were 10 to 30 times slower per image than 1 (thread
        oversubscription, ``benchmarks/results/classification.md``).

    Returns
    -------
    TrainingResult
        Last-epoch model, per-epoch history and test predictions.

    Notes
    -----
    Deterministic on CPU: the same inputs, seed and thread count give the same
    weights and predictions. Time O(epochs N H W) network evaluations; memory:
    the images are shared with torch without copy (float32 C-contiguous input),
    plus one batch of activations.

    References
    ----------
    Vindas et al. (2022), experiment 3 and Table 7; METHOD.md section 7.
    """
    images = _check_images(images, "images")
    labels = check_labels(labels, "labels", n_samples=images.shape[0])
    n_classes = check_int(n_classes, "n_classes", low=2)
    if labels.size and labels.max() >= n_classes:
        bad = np.unique(labels[labels >= n_classes])[:5].tolist()
        raise ValueError(
            f"labels contain class id(s) {bad} but n_classes={n_classes}; "
            f"allowed ids are 0..{n_classes - 1} and -1 (unlabelled)."
        )
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}."
        )
    epochs = check_int(epochs, "epochs", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    learning_rate = check_float(
        learning_rate, "learning_rate", low=0.0, low_inclusive=False
    )
    weight_decay = check_float(weight_decay, "weight_decay", low=0.0)
    seed = check_int(seed, "seed", low=0)
    if num_threads is not None:
        num_threads = check_int(num_threads, "num_threads", low=1)
    criterion = make_loss(loss, **(loss_params or {}))

    train_idx = np.flatnonzero(labels >= 0)
    if train_idx.size < 2:
        raise ValueError(
            f"labels must mark at least 2 labelled samples (>= 0) to train on, "
            f"got {train_idx.size}."
        )
    if (test_images is None) != (test_labels is None):
        raise ValueError("test_images and test_labels must be given together.")
    if test_images is not None:
        test_images = _check_images(test_images, "test_images")
        if test_images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"test_images have image shape {test_images.shape[1:]} but images "
                f"have {images.shape[1:]}."
            )
        test_labels = check_labels(
            test_labels, "test_labels", n_samples=test_images.shape[0]
        )
        if test_labels.size and test_labels.max() >= n_classes:
            raise ValueError(
                f"test_labels contain class id {int(test_labels.max())} but "
                f"n_classes={n_classes}."
            )

    x_all = torch.from_numpy(images)
    y_all = torch.from_numpy(labels)
    train_idx_t = torch.from_numpy(train_idx)
    rows = []
    start = time.perf_counter()
    with _torch_threads(num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        shuffle = torch.Generator().manual_seed(seed)
        model = build_cnn(images.shape[1:], n_classes, config)
        opt = _make_optimizer(
            optimizer, model.parameters(), learning_rate, weight_decay
        )
        bar = tqdm(
            range(1, epochs + 1),
            desc="train",
            disable=not progress,
            leave=False,
            unit="epoch",
        )
        predictions = None
        for epoch in bar:
            epoch_start = time.perf_counter()
            model.train()
            order = train_idx_t[torch.randperm(train_idx.size, generator=shuffle)]
            total = 0.0
            for batch in _batches(order, batch_size):
                opt.zero_grad(set_to_none=True)
                value = criterion(model(x_all[batch]), y_all[batch])
                value.backward()
                opt.step()
                total += value.item() * batch.numel()
            row = {"epoch": epoch, "train_loss": total / train_idx.size}
            if test_images is not None:
                predictions = predict(model, test_images)
                row.update(_monitor_metrics(test_labels, predictions))
            row["seconds"] = time.perf_counter() - epoch_start
            rows.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}")
        model.eval()
    return TrainingResult(
        model=model,
        history=pd.DataFrame(rows),
        test_predictions=predictions,
        n_train=int(train_idx.size),
        seconds=time.perf_counter() - start,
    )


def _monitor_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    known = y_true >= 0
    if not known.any():
        return {"test_accuracy": float("nan"), "test_mcc": float("nan")}
    yt, yp = y_true[known], y_pred[known]
    return {
        "test_accuracy": float(np.mean(yt == yp)),
        "test_mcc": _mcc(yt, yp),
    }


def _mcc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """scikit-learn's MCC, silent about a single class (it then returns 0)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="A single label was found", category=UserWarning
        )
        return float(matthews_corrcoef(y_true, y_pred))


def predict_proba(model: nn.Module, images, batch_size: int = 256) -> np.ndarray:
    """Return class probabilities (softmax of the logits) of shape (N, n_classes).

    Parameters
    ----------
    model : torch.nn.Module
        A network from :func:`build_cnn` (put in evaluation mode by this call).
    images : ndarray of shape (N, C, H, W)
        Images, float32.
    batch_size : int, default 256
        Images per forward pass; memory is O(batch_size H W).

    Returns
    -------
    ndarray of shape (N, n_classes), float32
    """
    images = _check_images(images, "images")
    batch_size = check_int(batch_size, "batch_size", low=1)
    model.eval()
    x = torch.from_numpy(images)
    out = []
    with torch.inference_mode():
        for start in range(0, x.shape[0], batch_size):
            out.append(torch.softmax(model(x[start : start + batch_size]), dim=1))
    return torch.cat(out).numpy()


def predict(model: nn.Module, images, batch_size: int = 256) -> np.ndarray:
    """Return the predicted class (argmax of the logits) of each image, shape (N,).

    Parameters are those of :func:`predict_proba`; ties go to the lowest class id.
    """
    return predict_proba(model, images, batch_size).argmax(axis=1).astype(np.int64)
