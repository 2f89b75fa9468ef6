"""Every Python code block of the README runs as written (in a scratch folder) and gives what it says."""
import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 1


def test_every_python_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, block in enumerate(python_blocks()):
        namespace = {"__name__": f"readme_block_{i}"}
        exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        if "history" in namespace:  # the API block: a trained model, its checkpoint and its evaluation
            assert np.isfinite(namespace["history"][-1]["test_elbo"])
            assert (tmp_path / "runs" / "api" / "model.npz").is_file()
