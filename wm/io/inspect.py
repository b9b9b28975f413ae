"""`wm inspect`: what an artifact is, where it came from, what it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py

from wm.io.artifact import ROOT_ATTRIBUTES, open_artifact
from wm.io.integrity import CONTENTS, is_sealed
from wm.training import RECORD_KEYS


def _dataset_info(name: str, dataset: h5py.Dataset) -> dict[str, Any]:
    return {
        "name": name,
        "shape": list(dataset.shape),
        "dtype": str(dataset.dtype),
        "chunks": list(dataset.chunks) if dataset.chunks else None,
        "compression": dataset.compression,
        "compression_opts": dataset.compression_opts,
        "shuffle": bool(dataset.shuffle),
        "image": dataset.attrs.get("CLASS") == b"IMAGE",
    }


def describe(path: str | Path) -> dict[str, Any]:
    """Kind, provenance (config, inputs, versions), every dataset, and a per-kind summary."""
    with open_artifact(path) as artifact:
        f = artifact.file
        datasets: list[dict[str, Any]] = []
        f.visititems(lambda name, item: datasets.append(_dataset_info(name, item)) if isinstance(item, h5py.Dataset) else None)
        other = {key: artifact.attr(key) for key in f.attrs if key not in ROOT_ATTRIBUTES and key != CONTENTS}
        for key, value in other.items():
            if hasattr(value, "item"):
                other[key] = value.item()
            if key.endswith("_json") and isinstance(value, str):
                other[key] = json.loads(value)
        description: dict[str, Any] = {
            "path": str(path),
            "kind": artifact.kind,
            "schema_version": artifact.schema_version,
            "wm_version": artifact.attr("wm_version"),
            "created_utc": artifact.attr("created_utc"),
            "stage": artifact.stage,
            "seed": artifact.seed,
            "fingerprint": artifact.fingerprint,
            "config": artifact.config,
            "inputs": artifact.inputs,
            "system": artifact.json_attr("system_json", {}),
            "sealed": is_sealed(f),
            "attributes": other,
            "datasets": datasets,
            "summary": _summary(artifact),
        }
    return description


def _summary(artifact: Any) -> dict[str, Any]:
    if artifact.kind in ("rollouts", "replay"):
        from wm.io.rollouts import RolloutsReader

        return RolloutsReader(artifact).summary()
    if artifact.kind == "latents":
        return {"episodes": int(artifact.file["episode/start"].shape[0]), "steps": int(artifact.file["mu"].shape[0])}
    if artifact.kind in ("vae", "mdnrnn", "controller"):
        history = artifact.json_attr("history_json", [])
        summary: dict[str, Any] = {"epochs" if artifact.kind != "controller" else "rows": len(history)}
        if artifact.kind == "controller":
            summary.update(algo=artifact.attr("algo"), trained_in=artifact.attr("trained_in"))
        if history:
            summary.update({key: value for key, value in history[-1].items() if key not in RECORD_KEYS and isinstance(value, (int, float))})
        return summary
    if artifact.kind == "evaluation":
        return evaluation_summary(artifact)
    if artifact.kind == "fidelity":
        summary = {"rules": artifact.json_attr("rules_json")}
        summary.update({f"{name}: dream/real length": round(row["length_ratio"], 3) for name, row in artifact.json_attr("summary_json").items()})
        summary.update({f"open loop, horizon {j}: NLL / death AUC": f"{row['nll']:.3f} / {row['done_auc']:.3f}"
                        for j, row in artifact.json_attr("open_loop_json").items()})
        return summary
    return {}


def evaluation_summary(artifact: Any) -> dict[str, Any]:
    """Real and dream returns of an evaluation artifact."""
    returns, lengths = artifact.file["episode/return"][:], artifact.file["episode/length"][:]
    dream = artifact.file["dream/return"][:]
    summary: dict[str, Any] = {
        "env_id": artifact.attr("env_id"), "episodes": len(returns), "mean_return": float(returns.mean()),
        "std_return": float(returns.std()), "min_return": float(returns.min()), "max_return": float(returns.max()),
        "mean_length": float(lengths.mean()), "dream_episodes": len(dream),
    }
    if "episode/action_counts" in artifact.file:
        totals = artifact.file["episode/action_counts"][:].sum(axis=0)
        summary["action_shares"] = (totals / max(1, totals.sum())).tolist()
    if len(dream):
        summary.update(dream_mean_return=float(dream.mean()), dream_std_return=float(dream.std()),
                       dream_temperature=float(artifact.attr("dream_temperature")))
    return summary


def evaluation_sentence(path: str | Path) -> str:
    """One line: the real score (mean +- std over the episodes) and the dream score beside it."""
    with open_artifact(path, "evaluation") as artifact:
        s = evaluation_summary(artifact)
    text = (f"{s['env_id']}: {s['episodes']} real episodes, return {s['mean_return']:.1f} +- {s['std_return']:.1f} "
            f"(min {s['min_return']:.0f}, max {s['max_return']:.0f}, mean length {s['mean_length']:.0f})")
    if "action_shares" in s:
        from wm.envs import action_name

        text += "; actions " + ", ".join(f"{action_name(s['env_id'], a)} {share:.0%}" for a, share in enumerate(s["action_shares"]))
    if s["dream_episodes"]:
        text += (f"; in the dream (tau {s['dream_temperature']:g}): {s['dream_mean_return']:.1f} +- {s['dream_std_return']:.1f} "
                 f"over {s['dream_episodes']} dreams")
    return text


def format_description(d: dict[str, Any]) -> str:
    """The human-readable form of `describe`."""
    lines = [
        f"{d['path']}: {d['kind']} artifact (schema {d['schema_version']}, wm {d['wm_version']}{', sealed: every attribute and dataset checked' if d['sealed'] else ''})",
        f"  made by stage '{d['stage']}' on {d['created_utc']} with seed {d['seed']}, fingerprint {d['fingerprint']}",
        "  config: " + json.dumps(d["config"], sort_keys=True),
    ]
    if d["inputs"]:
        lines.append("  inputs:")
        lines += [f"    {i['name']}: {i['kind']} {i['path']} ({i['fingerprint']})" for i in d["inputs"]]
    else:
        lines.append("  inputs: none")
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in d["system"].items() if v))
    for key, value in d["attributes"].items():
        text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        if len(text) > 160:  # per-epoch histories: summarised below, complete in --json
            text = text[:100] + f"... ({len(text)} characters; see --json)"
        lines.append(f"  {key}: {text}")
    lines.append("  datasets:")
    for ds in d["datasets"]:
        compression = ds["compression"] or "none"
        if ds["compression_opts"] is not None:
            compression += f" {ds['compression_opts']}"
        if ds["shuffle"]:
            compression += "+shuffle"
        shape = "x".join(str(n) for n in ds["shape"])
        chunks = "x".join(str(n) for n in ds["chunks"]) if ds["chunks"] else "contiguous"
        image = "  (image stack)" if ds["image"] else ""
        lines.append(f"    {ds['name']:<16} {shape:<18} {ds['dtype']:<8} chunks {chunks:<14} {compression}{image}")
    if d["summary"]:
        lines.append("  summary:")
        for key, value in d["summary"].items():
            lines.append(f"    {key}: {value:.3f}" if isinstance(value, float) else f"    {key}: {value}")
    return "\n".join(lines)
