"""Data sources, all converted to one schema (:class:`lqknn.data.schema.Dataset`).

- :func:`lqknn.data.hits.load_hits_folder` -- a HITS folder (manifest + images);
- :func:`lqknn.data.synthetic_hits.generate_hits_folder` -- writes synthetic HITS;
- :func:`lqknn.data.mnist.load_mnist_idx` -- MNIST IDX files;
- :func:`lqknn.data.medmnist.load_medmnist_npz` -- a MedMNIST ``.npz`` file;
- :func:`lqknn.data.digits.load_digits_dataset` -- scikit-learn's digits;
- :func:`lqknn.data.plots.plot_examples` -- a figure of examples per class.

Submodules are imported on demand (``medmnist`` pulls in torch; ``plots`` pulls in
matplotlib), so ``import lqknn.data`` stays light.
"""

from lqknn.data.schema import (
    NO_SUBJECT,
    UNKNOWN,
    Dataset,
    check_label_coverage,
    unknown_mask,
    validate_dataset,
)

__all__ = [
    "NO_SUBJECT",
    "UNKNOWN",
    "Dataset",
    "check_label_coverage",
    "unknown_mask",
    "validate_dataset",
]
