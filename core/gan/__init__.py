"""A conditional GAN (Mirza & Osindero, 2014) in DCGAN style: digits of a chosen class.

    >>> from core import gan
    >>> result = gan.train_gan(gan.GanConfig(epochs=20))
    >>> digits = gan.sample(result.generator, [3] * 8, seed=0)  # eight uint8 threes, 28 x 28

The two networks live beside the classifiers (``core/models/cgan.py``); here, one file per job:
``training`` (the two-player loop), ``sampling`` (digits, pictures, synthetic datasets), ``scores``
(label agreement, diversity, FID, classification accuracy score) and ``weights`` (files and manifest).
"""

from core.gan.sampling import (
    CHUNK,
    EXPORT_FORMATS,
    class_sweep,
    export_dataset,
    generate,
    interpolation,
    make_grid,
    noise,
    png_bytes,
    sample,
    sample_with,
    slerp,
    synthetic_dataset,
    to_pixels,
)
from core.gan.scores import (
    SHIPPED_CAS_IMAGES,
    SHIPPED_PER_CLASS,
    Scores,
    classification_accuracy_score,
    diversity,
    frechet_distance,
    judge_record,
    label_agreement,
    penultimate_features,
    score,
)
from core.gan.training import (
    GanConfig,
    GanEpoch,
    GanResult,
    GanStep,
    GanTrainer,
    epoch_seconds,
    to_unit_range,
    train_gan,
)
from core.gan.weights import find_generator, list_generators, load_generator, record_scores, save_generator
from core.models.cgan import ARCH, LATENT, MAX_LATENT, MAX_WIDTH, Discriminator, Generator

__all__ = [
    "ARCH", "CHUNK", "EXPORT_FORMATS", "LATENT", "MAX_LATENT", "MAX_WIDTH", "SHIPPED_CAS_IMAGES", "SHIPPED_PER_CLASS",
    "Discriminator", "GanConfig", "GanEpoch", "GanResult", "GanStep", "GanTrainer", "Generator", "Scores",
    "class_sweep", "classification_accuracy_score", "diversity", "epoch_seconds", "export_dataset",
    "find_generator", "frechet_distance", "generate", "interpolation", "judge_record", "label_agreement",
    "list_generators", "load_generator", "make_grid", "noise", "penultimate_features", "png_bytes",
    "record_scores", "sample", "sample_with", "save_generator", "score", "slerp", "synthetic_dataset",
    "to_pixels", "to_unit_range", "train_gan",
]
