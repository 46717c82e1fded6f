"""``study data``: the built-in dataset (params ``synthetic``) in the COCO layout."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from study.config import load_params
from study.data.synthetic import generate
from study.errors import ConfigError

log = logging.getLogger(__name__)
KNOWN = {"num_train", "num_val", "img_size", "seed", "image_format", "version"}


def make_data(params_path: str, out: Path | None = None) -> dict[str, Any]:
    """Generate the dataset params ``synthetic`` describes into ``out`` (default: its ``out``)."""
    params = load_params(params_path)
    syn = dict(params.get("synthetic") or {})
    if not syn:
        raise ConfigError(f"{params_path}: no `synthetic` section")
    default_out = syn.pop("out", "data/synthetic")
    out = out or Path(default_out)
    if set(syn) - KNOWN:
        raise ConfigError(
            f"{params_path}: unknown keys in `synthetic`: {sorted(set(syn) - KNOWN)}; "
            f"valid: out, {', '.join(sorted(KNOWN))}"
        )
    try:
        stats = generate(out, **syn)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{params_path}: `synthetic`: {exc}") from None
    log.info("wrote %s: %s", out, {k: stats[k] for k in stats if k != "params"})
    print(
        f"generated {sum(stats['images'].values())} images at "
        f"{stats['images_per_s']:.1f} images/s into {out}"
    )
    return stats
