"""Timing names ("<model>.<kind>[.<detail>]") and the rebuild/refit ratios derived from them."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

#: Timing kinds that pair up into the rebuild/refit ratio.
REFIT_KIND = "refit"
REBUILD_KIND = "rebuild"


def split_timing_name(name: str) -> Optional[Tuple[str, str, str]]:
    """Split "<model>.<kind>[.<detail>]" into (model, kind, detail) for kind refit/rebuild.

    "mnist.refit.conv1" -> ("mnist", "refit", "conv1"); "bidaf.standin.rebuild.cold_cache"
    -> ("bidaf.standin", "rebuild", "cold_cache"). None when the name has no refit/rebuild part.
    """
    parts = name.split(".")
    for index, part in enumerate(parts):
        if part in (REFIT_KIND, REBUILD_KIND) and index > 0:
            return ".".join(parts[:index]), part, ".".join(parts[index + 1:])
    return None


def primary_timing(timings: Dict[str, Any], model: str, kind: str) -> Optional[str]:
    """"<model>.<kind>" when recorded, else the alphabetically first "<model>.<kind>.<detail>"."""
    exact = f"{model}.{kind}"
    if exact in timings:
        return exact
    candidates = sorted(n for n in timings
                        if (split_timing_name(n) or ("", "", ""))[:2] == (model, kind))
    return candidates[0] if candidates else None


def timing_models(timings: Dict[str, Any]) -> List[str]:
    """Models named by refit/rebuild timings, "mnist" first then alphabetical."""
    models = {parts[0] for parts in (split_timing_name(n) for n in timings) if parts}
    return sorted(models, key=lambda m: (m != "mnist", m))


def derive_ratios(timings: Dict[str, Any]) -> Dict[str, float]:
    """rebuild median / refit median per model, from the primary timings of each kind."""
    ratios: Dict[str, float] = {}
    for model in timing_models(timings):
        refit = primary_timing(timings, model, REFIT_KIND)
        rebuild = primary_timing(timings, model, REBUILD_KIND)
        if refit is None or rebuild is None:
            continue
        refit_s = timings[refit].get("median_s")
        rebuild_s = timings[rebuild].get("median_s")
        if refit_s and rebuild_s is not None:
            ratios[model] = float(rebuild_s) / float(refit_s)
    return ratios
