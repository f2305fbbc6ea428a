"""notebooks/colab_quickstart.ipynb runs headless, top to bottom, so it cannot rot.

The notebook's parameter cell (tagged "parameters") is followed by an injected cell, as
papermill does it: this checkout instead of a clone, no install, a tiny LTR3O config on
the session's tiny build, no TensorBoard server. Everything else runs as on Colab:
the doctor, the build command, training, the figures, `--mode eval` checked to
reproduce the trained metrics, and `--mode predict` on a new synthetic clip as a video.
A last injected cell checks that the notebook's own
Python never imported jax (on a TPU runtime it would hold the chip the training needs).
"""

import json

import fixtures
import nbclient
import nbformat
from fixtures import ROOT, write_config_file

NOTEBOOK = ROOT / "notebooks" / "colab_quickstart.ipynb"

synthetic_data_dir = fixtures.synthetic_data_dir


def injected(cell_source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(cell_source, metadata={"tags": ["injected-parameters"]})


def test_the_quickstart_notebook_runs_headless(synthetic_data_dir, tmp_path):
    config_file = write_config_file(
        tmp_path / "tiny_ltr3o.py",
        synthetic_data_dir,
        {"engine.mode": "sequential", "seeds": (0,), "train.steps": 20},
        base="ltr3o",
    )
    workdir = tmp_path / "workdir"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (at,) = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    parameters = {
        "PROJECT_DIR": str(ROOT),
        "INSTALL": False,
        "CONFIG": str(config_file),
        "DATA_DIR": str(synthetic_data_dir),
        "WORKDIR": str(workdir),
        "SHOW_TENSORBOARD": False,
    }
    notebook.cells.insert(
        at + 1, injected("\n".join(f"{name} = {value!r}" for name, value in parameters.items()))
    )
    notebook.cells.append(injected('assert "jax" not in sys.modules, "the kernel imported jax"'))

    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # Raises CellExecutionError, with the failing cell's traceback, on any error.
    client.execute(env=fixtures.launch_env())

    text = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "READY" in text and "config: " + str(config_file) in text
    assert "built synthetic_me/" in text
    assert "reproduced: the restored models give exactly the trained metrics" in text
    # The new person's clip, predicted by the trained replicas.
    assert "synthetic.mp4" in text and (workdir / "predictions_new.csv").exists()
    images = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 2  # the confusion matrix and the curves
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["n_folds"] == fixtures.NUM_SUBJECTS and metrics["seeds"] == [0]
