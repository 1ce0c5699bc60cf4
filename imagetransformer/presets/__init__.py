"""Pretrained presets: models trained by this project, shipped inside the package, loaded in one line.

```python
import imagetransformer as it

it.list_presets()                                   # {name: metadata}: dataset, task, test bits/dim, ...
model = it.from_preset("fashion_mnist_local_1d")    # a compiled keras.Model (safe_mode=True)
it.complete(model, images, known_rows=14, seed=0)   # images: uint8 [B, 28, 28, 1]
it.ImageTransformer.from_preset("fashion_mnist_local_1d")   # the same, checking the class
```
Each preset is a folder `imagetransformer/presets/<name>/`, which is also a model directory that every program
reads (`--preset=<name>` or `--model_dir=<folder>`):

```
model.keras      the model, for keras.models.load_model(path, safe_mode=True) after `import imagetransformer`
config.json      the training configuration (model, data and training sections of the run)
metadata.json    this preset's row of the presets table (see METADATA_KEYS)
README.md        the model card: data, configuration, steps, wall time, test bits/dim, commands that reproduce it
completions.png  completions of test images (rows: given top half | completion | original)
```
`write_preset` (used by `scripts/make_preset.py`) makes such a folder from a trained model directory, measuring
its test bits/dim on the whole test split.
"""

import json
import os
import shutil

import keras

from imagetransformer import models
from imagetransformer.evaluation import evaluator
from imagetransformer.training import checkpoints

PRESETS_DIR = os.path.dirname(os.path.abspath(__file__))
MODEL_FILE = checkpoints.MODEL_FILE
METADATA_FILE = "metadata.json"
CARD_FILE = "README.md"
GRID_FILE = "completions.png"
# The columns of the presets table (`list_presets()`), in order.
# `check_bits_per_dim`: bits/dim on the first CHECK_IMAGES test images, which the tests reproduce.
METADATA_KEYS = ("description", "dataset", "task", "model", "attention", "parameters", "steps", "train_minutes",
                 "test_bits_per_dim", "test_images", "check_bits_per_dim", "data_license")
CHECK_IMAGES = 100
DATA_LICENSES = {"fashion_mnist": "MIT (Zalando Research, Fashion-MNIST)"}


class PresetError(ValueError):
    """An unknown preset name, or a folder that is not a preset."""


def _names():
    return sorted(name for name in os.listdir(PRESETS_DIR)
                  if os.path.isfile(os.path.join(PRESETS_DIR, name, METADATA_FILE)))


def list_presets():
    """`{name: metadata}` of every shipped preset (the keys of `METADATA_KEYS`), sorted by name."""
    presets = {}
    for name in _names():
        with open(os.path.join(PRESETS_DIR, name, METADATA_FILE)) as f:
            presets[name] = json.load(f)
    return presets


def path(preset):
    """The folder of `preset`: a shipped preset's name, or a folder holding `model.keras` (another preset).

    Raises:
        PresetError: neither; the message lists the shipped presets.
    """
    folder = preset if os.path.sep in preset or os.path.isdir(preset) else os.path.join(PRESETS_DIR, preset)
    if not os.path.isfile(os.path.join(folder, MODEL_FILE)):
        raise PresetError(f"{preset!r} is not a preset; choose one of {', '.join(_names()) or '(none shipped)'} "
                          f"(imagetransformer.list_presets() describes them), or a folder holding {MODEL_FILE}.")
    return folder


def from_preset(preset, compile=True):  # pylint: disable=redefined-builtin
    """The model of `preset` (a name of `list_presets()` or a preset folder), loaded with `safe_mode=True`.

    With `compile=True` it is compiled (Adam, the models' own likelihood loss), so `evaluate` and `fit` (fine-
    tuning) work at once.
    """
    model = checkpoints.load_model(path(preset))  # keras.models.load_model(..., safe_mode=True)
    if not isinstance(model, models.AutoregressiveImageModel):
        raise PresetError(f"{preset!r} holds a model of class {type(model).__name__}, not one of this project's models.")
    if compile:
        model.compile(optimizer=keras.optimizers.Adam())
    return model


def _card(name, metadata, config, commands, notes, caption):
    model = config["model"]
    rows = "\n".join(f"| {key} | {metadata[key]} |" for key in METADATA_KEYS
                     if metadata.get(key) is not None and key != "description")
    train = config.get("train", {})
    # The splits are in the data section (in the train section of model directories written before 2026-12-06).
    splits = {**train, **config.get("data", {})}
    model_rows = "\n".join(f"| `{key}` | `{json.dumps(value)}` |" for key, value in sorted(model.items()))
    train_rows = "\n".join(f"| `{key}` | `{json.dumps(value)}` |" for key, value in sorted(train.items()))
    command_block = "\n".join(commands)
    return f"""# {name}

{metadata['description']}

```python
import imagetransformer as it
model = it.from_preset("{name}")
```

| | |
|---|---|
{rows}

![completions](completions.png)

{caption}

## Data

{metadata['dataset']}: trained on `{splits.get('train_split', 'train')}`, validated on `{splits.get('val_split')}` (held-out
training images); the bits/dim above are over the whole test split, which no choice was made on. License of the
data: {metadata['data_license']}.

## Reproduce

```
{command_block}
```
The training command resumes from its backup when run again with the same flags; `--train_minutes` is a
wall-clock budget per invocation.

{notes}

## Model configuration

| key | value |
|---|---|
{model_rows}

## Training configuration

| key | value |
|---|---|
{train_rows}
"""


def write_preset(model_dir, name, description, commands=(), notes="", output_root=PRESETS_DIR,
                 eval_examples=None, steps=None, train_minutes=None, progress=True):
    # `steps` and `train_minutes`: the training run's, for the card (the model directory does not record them).
    """Makes the preset folder `output_root/name` from the trained model directory `model_dir`.

    Evaluates the model on its dataset's test split (all of it unless `eval_examples`), writes its completion grid,
    the `.keras` model, its configuration, metadata and model card into a temporary folder and renames it into
    place (an existing preset of that name is replaced only when the new one is complete). Returns the metadata.
    """
    # The programs define their absl flags when imported: only here, where their grid drawing is used.
    # pylint: disable=import-outside-toplevel
    from imagetransformer.programs import complete as complete_program
    from imagetransformer.programs import super_resolve as super_resolve_program

    model = checkpoints.load_model(model_dir)
    config = checkpoints.load_config(model_dir)
    result = evaluator.evaluate(model_dir, "test", eval_examples=eval_examples, model=model, sr_examples=0)
    check = evaluator.evaluate(model_dir, "test", eval_examples=CHECK_IMAGES, model=model, sr_examples=0)
    folder = os.path.join(output_root, name)
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    grid = os.path.join(tmp, GRID_FILE)
    if not model.condition.completes_top_rows:
        super_resolve_program.run(model_dir, grid, num_images=6, seed=0, progress=progress)
        caption = ("Super-resolutions of the first test images, seed 0 (each row: the low-resolution input, bicubic "
                   "upsampling,\nthe model's samples at temperatures 0.8 and 1.0, the original).")
    else:
        complete_program.run(model_dir, grid, num_images=6, seed=0, progress=progress, scale=3)
        caption = ("Completions of the first test images at temperature 1.0, seed 0 (each row: the given top half, "
                   "the model's\nbottom half, the original).")
    model.save(os.path.join(tmp, MODEL_FILE))
    shutil.copyfile(os.path.join(model_dir, checkpoints.CONFIG_FILE), os.path.join(tmp, checkpoints.CONFIG_FILE))
    model_config = config["model"]
    dataset = config.get("data", {}).get("dataset")
    metadata = dict(
        description=description, dataset=dataset,
        task=model.condition.task,
        model=model_config.get("model"),
        attention=model_config.get("attention") if model_config.get("model") != "pixelcnnpp" else None,
        parameters=model.count_params(), steps=steps,
        train_minutes=train_minutes, test_bits_per_dim=round(result.bits_per_dim, 4),
        test_images=result.num_examples, check_bits_per_dim=round(check.bits_per_dim, 4), data_license=DATA_LICENSES.get(dataset, "see the dataset's card"))
    with open(os.path.join(tmp, METADATA_FILE), "w") as f:
        json.dump({key: metadata[key] for key in METADATA_KEYS}, f, indent=2)
        f.write("\n")
    with open(os.path.join(tmp, CARD_FILE), "w") as f:
        f.write(_card(name, metadata, config, commands, notes, caption))
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return metadata

