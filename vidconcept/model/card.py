"""The bundle's model card ``MODEL.md``, generated from ``config.json`` so it never goes stale.

Measured results are added with :func:`record_metrics` (an :func:`vidconcept.evaluate.evaluate`
report plus the exact command that produced it); the card is then regenerated.
"""
from __future__ import annotations

from pathlib import Path

from vidconcept.model.bundle import CARD_FILE, read_config, write_config


def record_metrics(bundle: str | Path, report: dict, command: str) -> None:
    """Store an evaluation ``report`` under ``"<dataset> <split>"`` in config.json and refresh MODEL.md."""
    config = read_config(bundle)
    key = f"{report['dataset']} {report['split']}"
    config.metrics[key] = {"metric": report["metric"], "images": report["images"], "command": command,
                           "outputs": report["outputs"], **{k: report[k] for k in ("summary", "unit") if report.get(k)}}
    write_config(bundle, config)
    write_model_card(bundle)


def _training_section(training: dict | None, level: str = "") -> list[str]:
    if not training:
        return ["Not trained here: the weights are the backbone's pretrained ones.", ""]
    keys = ("backbone", "strategy", "datasets", "repeat", "split", "images", "epochs", "lr", "lr_mult", "batch_size",
            "image_size", "train_size", "crop_pct", "crop_mode", "cache_stages", "init", "weights", "photos",
            "precision", "seed", "detector_c", "loss", "open_world", "names", "shipped", "dropped", "hardware",
            "train_time")
    lines = [f"- {k}: `{training[k]}`" for k in keys if training.get(k) not in (None, {})]
    lines += ["", "Reproduce with:", "", "```", training.get("command", ""), "```", ""]
    refit = training.get("detectors")
    if refit:
        lines += [f"LR detectors fitted again afterwards on {', '.join(f'`{d}`' for d in refit['datasets'])} "
                  f"(split `{refit['split']}`, {refit['images']} images" + (f"; {refit['time']}" if refit.get("time") else "") +
                  (f"; C per layer: `{refit['c']}`" if refit.get("c") else "") +
                  (f"; {refit['background']} generated background frames" if refit.get("background") else "") +
                  ("; cross-set negatives (open world)" if refit.get("open_world") else "") +
                  (f"; calibration `{refit['calibration']}`" if refit.get("calibration") else "") +
                  ") with:", "", "```", refit["command"], "```", ""]
    if training.get("before"):  # trained on from another bundle: how that one was made
        lines += [f"###{level} Before: how `{training.get('init')}` was trained", ""]
        lines += _training_section(training["before"], level + "#")
    return lines


def _metrics_section(metrics: dict) -> list[str]:
    if not metrics:
        return ["No measured metrics yet (see `vidconcept.evaluate.evaluate` and `card.record_metrics`).", ""]
    lines = []
    for key, entry in metrics.items():
        outputs = entry["outputs"]
        kinds = list(outputs)
        lines += [f"### {key} ({entry['images']} {entry.get('unit', 'images')}, {entry['metric'].upper()})", "", "```",
                  entry["command"], "```", ""]
        if entry.get("summary"):
            lines += [", ".join(f"{k}: {v}" for k, v in entry["summary"].items()), ""]
        lines += [
                  "| concept | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds),
                  "| **MAP** | " + " | ".join(f"**{outputs[k]['map']:.4f}**" for k in kinds) + " |"]
        if all("ece" in outputs[k] for k in kinds):  # expected calibration error, 10 equal-width bins
            lines.append("| ECE (10 bins) | " + " | ".join(f"{outputs[k]['ece']:.4f}" for k in kinds) + " |")
        for concept in outputs[kinds[0]]["ap"]:
            lines.append(f"| {concept} | " + " | ".join(f"{outputs[k]['ap'].get(concept, float('nan')):.4f}"
                                                        for k in kinds) + " |")
        lines.append("")
    return lines


def _precision_line(cpu_precision: str) -> str:
    if cpu_precision != "bf16":
        return f"`{cpu_precision}`"
    return ("`bf16` where the CPU has it natively (AVX512-BF16 or AMX), `fp32` on every other CPU, chosen at "
            "load (`vidconcept/model/cpu.py`; keyframes per second per CPU: docs/speed.md)")


def write_model_card(bundle: Path) -> Path:
    """(Re)write ``MODEL.md`` from the bundle's config."""
    config = read_config(bundle)
    scores = "fused LR detectors (mean of " + ", ".join(config.detectors["layers"]) + ")" if config.detectors \
        else f"{config.output} of the concept layer"
    if config.detectors and config.calibration:
        cal = config.calibration
        scores += (f", calibrated per concept ({cal['method']}; held-out ECE {cal.get('ece_uncalibrated')} before, "
                   f"{cal.get('ece_calibrated')} after, {cal.get('bins', 10)} equal-width bins)")
    lines = [f"# Model card: {config.name}", "",
             f"- backbone: `{config.backbone}`, strategy: `{config.strategy}`",
             f"- {len(config.concepts)} concepts: " + ", ".join(config.concepts[:60]) +
             (" …" if len(config.concepts) > 60 else ""),
             f"- scores: {scores}",
             f"- preprocessing: `{config.data_config}`",
             f"- network precision on CPU: {_precision_line(config.cpu_precision)} (on CUDA: fp16 autocast)", "",
             "## Training", ""] + _training_section(config.training) + ["## Metrics", ""] + _metrics_section(config.metrics)
    path = Path(bundle) / CARD_FILE
    path.write_text("\n".join(lines) + "\n")
    return path
