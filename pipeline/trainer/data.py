"""tf.data input pipeline over the image tf.Examples: read, shuffle, decode, resize, augment.

Memory does not grow with the data: the pipeline streams. In training order:

1. the split's TFRecord shards, in an order reshuffled every epoch (seeded);
2. read in parallel, ``min(shards, PARALLEL_READS)`` at a time, records interleaved;
3. a shuffle buffer of ``shuffle_buffer`` **encoded** records (a 224x224 JPEG is ~20-30 KB,
   its decoded float32 image 602 KB);
4. parse, decode, (random translation,) resize, preprocess, (random brightness), in parallel
   after the shuffle, one record per call;
5. batches, prefetched.

Nothing is cached unless asked (``cache``): ``"memory"`` keeps every decoded image in RAM
(count x h x w x 3 x 4 bytes, logged, refused when larger than the machine's memory),
``"disk"`` writes them under a folder the caller owns (the Trainer uses its ``model_run_dir``)
and shuffles the decoded images in a buffer bounded to ``DECODED_SHUFFLE_BYTES``.

Deterministic given ``seed``: shard order, shuffle and augmentation come from seeded
(stateless) random ops, and parallel stages keep their order.

>>> dataset = make_dataset(files, (224, 224), "mobilenet_v2", 32, training=True, seed=0)
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging

from backbone_regularizer.pipeline.trainer.preprocessing import preprocess_fn

IMAGE_KEY = "image"
LABEL_KEY = "label"
FEATURES = {
    IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
}
CACHE = ("none", "memory", "disk")
# Shards read at once. Fixed, not AUTOTUNE: the interleaved order must not depend on the
# machine's core count (same seed, same order everywhere).
PARALLEL_READS = 16
# With cache="disk", decoded images are shuffled: at most this many bytes of them in the buffer.
DECODED_SHUFFLE_BYTES = 256 * 2**20
# Random translation: up to this fraction of the height and width, in either direction.
MAX_SHIFT = 1 / 8
MAX_BRIGHTNESS = 0.1


def list_files(file_pattern: list[str] | str) -> list[str]:
    """The files matching ``file_pattern`` (a pattern or a list of them), sorted.

    Raises:
        ValueError: nothing matches.
    """
    files = sorted(set(tf.io.gfile.glob(file_pattern)))
    if not files:
        raise ValueError(f"Expected TFRecord files. Received: no match for {file_pattern!r}")
    return files


def read_records(files: list[str], shuffle_files: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Serialized records of GZIP TFRecord ``files``, read ``PARALLEL_READS`` shards at once.

    ``shuffle_files`` reshuffles the shard order every epoch (seeded).
    """
    shards = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files and len(files) > 1:
        shards = shards.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return shards.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=min(len(files), PARALLEL_READS),
        block_length=1,
        **(parallel if len(files) > 1 else {}),
    )


def _translate(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Shift an image ``[h, w, 3]`` (decoded uint8, or a cached float32 in [0, 255]) by up to
    ``MAX_SHIFT`` of its size in each direction, black fill.

    A slice and a constant pad (as torchvision's ``RandomCrop(padding=...)``): about free next
    to decoding, where a reflect pad of the float image cost as much as the JPEG decode.
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    fraction = tf.random.stateless_uniform([2], seed, -MAX_SHIFT, MAX_SHIFT)
    dy = tf.cast(tf.round(fraction[0] * tf.cast(height, tf.float32)), tf.int32)
    dx = tf.cast(tf.round(fraction[1] * tf.cast(width, tf.float32)), tf.int32)
    top, bottom = tf.maximum(dy, 0), tf.maximum(-dy, 0)
    left, right = tf.maximum(dx, 0), tf.maximum(-dx, 0)
    kept = image[bottom : height - top, right : width - left]
    return tf.pad(kept, [[top, bottom], [left, right], [0, 0]])


def decode_image(
    encoded: tf.Tensor, image_size: tuple[int, int], seed: tf.Tensor | None = None
) -> tf.Tensor:
    """One PNG/JPEG -> float32 ``[h, w, 3]`` in [0, 255], resized; shifted when ``seed``."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    if seed is not None:
        image = _translate(image, seed)
    # resize() reads uint8 directly (float32 out): a separate cast cost ~8% of a 224x224 decode.
    return tf.image.resize(image, image_size)


def load_example(
    record: tf.Tensor, image_size: tuple[int, int], seed: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """A serialized tf.Example -> (float32 ``[h, w, 3]`` image in [0, 255], int64 label)."""
    example = tf.io.parse_single_example(record, FEATURES)
    return decode_image(example[IMAGE_KEY], image_size, seed), example[LABEL_KEY]


def decode_images(encoded: tf.Tensor, image_size: tuple[int, int], module: str | dict) -> tf.Tensor:
    """Encoded PNG/JPEG bytes [batch] -> preprocessed float32 [batch, h, w, 3] (serving).

    ``module``: a keras.applications module name (its ``preprocess_input``, e.g. MobileNetV2
    scales to [-1, 1]) or a ``{"scale", "offset"}`` dict
    (``backbone_regularizer.pipeline.trainer.preprocessing``).
    """
    images = tf.map_fn(
        lambda one: decode_image(one, image_size), encoded, fn_output_signature=tf.float32
    )
    return preprocess_fn(module)(images)


def decoded_bytes(count: int, image_size: tuple[int, int]) -> int:
    """Bytes of ``count`` decoded float32 RGB images: ``count x h x w x 3 x 4``."""
    return count * image_size[0] * image_size[1] * 3 * 4


def memory_limit() -> int:
    """Bytes this process may use: the cgroup limit when there is one, else physical RAM."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value.isdigit():
            return min(int(value), physical)
    return physical


def _check_cache(cache: str, cache_dir: str | None, files: list[str], image_size) -> None:
    if cache not in CACHE:
        raise ValueError(
            f"Invalid trainer setting `cache`. Expected one of {list(CACHE)}. "
            f"Received: cache={cache!r}"
        )
    if cache == "none":
        return
    if cache == "disk" and not cache_dir:
        raise ValueError(
            "Expected a folder for cache='disk' (the Trainer passes its model_run_dir). "
            f"Received: cache_dir={cache_dir!r}"
        )
    # One streaming pass over the encoded records: the size is stated before it is spent.
    count = int(read_records(files).reduce(0, lambda n, _: n + 1))
    size = decoded_bytes(count, image_size)
    limit = memory_limit()
    where = f"in memory (limit {limit / 1e9:.1f} GB)" if cache == "memory" else f"in {cache_dir}"
    logging.info(
        "cache=%r: %d decoded %dx%dx3 float32 images, %.2f GB %s",
        cache,
        count,
        *image_size,
        size / 1e9,
        where,
    )
    if cache == "memory" and size > limit:
        raise ValueError(
            f"Expected the decoded images to fit in memory ({limit / 1e9:.1f} GB) for "
            f'cache="memory". Received: {count} images of {image_size[0]}x{image_size[1]} = '
            f'{size / 1e9:.1f} GB; use cache="none" (the default) or "disk"'
        )


def make_dataset(
    file_pattern: list[str] | str,
    image_size: tuple[int, int],
    preprocessing_module: str | dict,
    batch_size: int,
    training: bool,
    augment: bool = False,
    seed: int = 0,
    cache: str = "none",
    cache_dir: str | None = None,
    shuffle_buffer: int = 1024,
) -> tf.data.Dataset:
    """Batches of ``(images, labels)`` from GZIP TFRecords of tf.Examples (see the module).

    Args:
        file_pattern: the split's files (a pattern or a list of them).
        image_size: (height, width) every image is resized to.
        preprocessing_module: see ``backbone_regularizer.pipeline.trainer.preprocessing``.
        batch_size: examples per batch (the last batch may be smaller).
        training: shuffle (shards, then records) and augment; otherwise file order.
        augment: random translation (up to 1/8 of the size, black fill) and brightness
            (+-0.1 after preprocessing), per image; only when ``training``.
        seed: seeds every random choice; the same seed gives the same batches.
        cache: "none", "memory" or "disk" (decoded images, see the module).
        cache_dir: the folder for ``cache="disk"``; the caller creates and removes it.
        shuffle_buffer: encoded records in the shuffle buffer.

    Raises:
        ValueError: no file matches ``file_pattern``; an unknown ``cache``; ``"disk"``
            without ``cache_dir``; a ``"memory"`` cache larger than the machine's memory.
    """
    files = list_files(file_pattern)
    _check_cache(cache, cache_dir, files, image_size)
    preprocess = preprocess_fn(preprocessing_module)
    augment = augment and training

    def finish(image, label, element_seed=None):
        image = preprocess(image)
        if element_seed is not None:
            image += tf.random.stateless_uniform([], element_seed, -MAX_BRIGHTNESS, MAX_BRIGHTNESS)
        return image, label

    def with_seeds(dataset):
        # One random int64 per element, different every epoch, fixed by `seed`: the element's
        # stateless seed is [s, 0] (made in the parallel map, not in a map of its own).
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip(dataset, seeds)

    def pair(random):
        return tf.stack([random, 0])

    def checked(images, labels):
        return tf.ensure_shape(images, [None, *image_size, 3]), labels

    parallel = dict(num_parallel_calls=tf.data.AUTOTUNE)
    if cache == "none":
        dataset = read_records(files, shuffle_files=training, seed=seed)
        if training:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if augment:  # the shift on the encoded image's own pixels, before the resize
            dataset = with_seeds(dataset).map(
                lambda r, s: finish(*load_example(r, image_size, pair(s)), pair(s)), **parallel
            )
        else:
            dataset = dataset.map(lambda r: finish(*load_example(r, image_size)), **parallel)
    else:
        # Decoded, resized images in file order are cached; shuffle and augment come after.
        dataset = read_records(files).map(lambda r: load_example(r, image_size), **parallel)
        if cache == "memory":
            dataset = dataset.cache()
        else:
            dataset = dataset.cache(os.path.join(cache_dir, "train" if training else "eval"))
        if training:
            buffer = shuffle_buffer
            if cache == "disk":
                per_image = decoded_bytes(1, image_size)
                buffer = max(batch_size, min(buffer, DECODED_SHUFFLE_BYTES // per_image))
            dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        if augment:
            dataset = with_seeds(dataset).map(
                lambda example, s: finish(_translate(example[0], pair(s)), example[1], pair(s)),
                **parallel,
            )
        else:
            dataset = dataset.map(finish, **parallel)
    # A map after `batch` (a shape check) makes tf.distribute split each batch evenly across
    # replicas (a last batch of 8 on 2 replicas: 4 + 4, not 8 + 0), as the pipeline always did:
    # Keras 3.12's evaluate() under MirroredStrategy fails when the first batch is uneven.
    dataset = dataset.batch(batch_size).map(checked)
    return dataset.prefetch(tf.data.AUTOTUNE)
