"""The Ray engine against the local one: same index from the same videos (issue 9)."""
from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import snapshot
from vidconcept.api import Index
from vidconcept.engines import create_engine
from vidconcept.errors import UsageError

pytestmark = pytest.mark.slow  # a Ray runtime starts per run: minutes

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the ray extra is not installed: pip install 'vidconcept[ray]'")


@pytest.fixture(scope="module")
def videos(photo_videos, tmp_path_factory):
    """The two photo videos and one file that is not a video."""
    d = tmp_path_factory.mktemp("ray-videos")
    for name in ("a.mp4", "b.mp4"):
        shutil.copy2(photo_videos / name, d / name)
    (d / "broken.mp4").write_bytes(b"\x00not a video" * 100)
    return d


def _ingest(root, paths, **kw):
    with Index(root, create=True) as idx:
        return idx.ingest(paths, **kw)


@pytest.fixture(scope="module")
def runs(videos, tmp_path_factory):
    """(local root, local summary, ray root, ray summary, ray seconds)."""
    base = tmp_path_factory.mktemp("ray-engine")
    local = _ingest(base / "local", [videos], workers=1)
    start = time.perf_counter()
    remote = _ingest(base / "ray", [videos], engine="ray", workers=1)  # a local runtime with 2 CPUs
    return base / "local", local, base / "ray", remote, time.perf_counter() - start


@needs_ray
@pytest.mark.logs_errors  # the runs fixture ingests a broken file: each engine logs its one-line failure
def test_ray_index_equals_local(runs):
    local_root, _, ray_root, _, _ = runs
    a, b = snapshot(local_root), snapshot(ray_root)
    assert a["videos"] == b["videos"] and a["shots"] == b["shots"] and b["dupes"] == 0
    assert a["scores"].keys() == b["scores"].keys()
    np.testing.assert_allclose([b["scores"][k] for k in a["scores"]], list(a["scores"].values()), atol=1e-4)
    assert a["vectors"] == b["vectors"] == b["features"]


@needs_ray
def test_ray_summary_and_failures_match_local(runs):
    _, local, _, remote, seconds = runs
    a, b = local.to_dict(), remote.to_dict()
    assert b["videos"] == 2 and b["shots"] == 5
    assert [(f["path"], f["reason"]) for f in b["failed"]] == [(f["path"], f["reason"]) for f in a["failed"]]
    assert len(b["failed"]) == 1
    assert seconds < 60


@needs_ray
def test_ray_writes_keyframes_and_stops_its_runtime(runs):
    import ray

    _, _, ray_root, _, _ = runs
    with Index(ray_root) as idx:
        rows = list(idx.store.db.query("SELECT keyframe FROM shots"))
    assert rows and all((ray_root / r["keyframe"]).is_file() for r in rows)
    assert not ray.is_initialized()


@needs_ray
def test_ray_reingest_is_idempotent(runs, videos):
    _, _, ray_root, _, _ = runs
    before = snapshot(ray_root)
    # The broken file would be retried (as by the local engine); the videos must not be.
    again = _ingest(ray_root, [videos / "a.mp4", videos / "b.mp4"], engine="ray", workers=1).to_dict()
    assert again["videos"] == 0 and again["unchanged"] == 2
    assert snapshot(ray_root) == before


def test_ray_missing_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    monkeypatch.delitem(sys.modules, "vidconcept.engines.ray", raising=False)
    with pytest.raises(UsageError, match=r"pip install 'vidconcept\[ray\]'"):
        create_engine("ray", model=None)


@needs_ray
def test_ray_unreachable_address_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    engine = create_engine("ray", model=None, address=f"127.0.0.1:{port}")
    with pytest.raises(UsageError, match="no Ray cluster"):
        next(engine.run([]))


@needs_ray
def test_ray_actor_guards(runs, tmp_path):
    """Actors that cannot load the bundle, or load another model, are a UsageError; a runtime
    the engine did not start is left running (without the engine's actors)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        missing = create_engine("ray", model=None, workers=1, model_dir=tmp_path / "nowhere")
        with pytest.raises(UsageError, match="could not load"):
            list(missing.run([]))
        other = SimpleNamespace(name="other", concepts=["cat"], feature_dim=8)
        with pytest.raises(UsageError, match="model_dir"):
            list(create_engine("ray", model=other, workers=1).run([]))
        assert ray.is_initialized()
        deadline = time.monotonic() + 10  # killed actors hand their CPUs back asynchronously
        while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 2
    finally:
        ray.shutdown()
