"""What the page needs of a bundle: a manifest, a config and the graphs it runs (checked before anything is
built or served)."""

import json
from pathlib import Path

from janusweb.errors import UserError

PAGE_GRAPHS = ("prepare_inputs_embeds", "language_model", "lm_head", "gen_step", "image_decode")


def check_bundle(path: Path) -> dict:
    """The manifest of a bundle the page can run; UserError (one line, exit 2) for anything else."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder")
    if not (path / "manifest.json").is_file() or not (path / "config.json").is_file():
        raise UserError(f"{path} is not a janusweb bundle (no manifest.json / config.json); "
                        "write one with `janusweb export`")
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}/manifest.json is unreadable: {e}") from e
    missing = [g for g in PAGE_GRAPHS if g not in manifest.get("graphs", {})]
    if missing:
        raise UserError(f"{path} lacks the graphs {', '.join(missing)} that the page runs; re-export it")
    return manifest
