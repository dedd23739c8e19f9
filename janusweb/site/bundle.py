"""What the page needs of a bundle: the one bundle check (janusweb.bundle_check) and the graphs the page runs."""

from pathlib import Path

from janusweb.bundle_check import check_bundle as check

PAGE_GRAPHS = ("prepare_inputs_embeds", "language_model", "lm_head", "gen_step", "image_decode")


def check_bundle(path: Path) -> dict:
    """The manifest of a bundle the page can run; UserError (one line, exit 2) for anything else."""
    return check(path, PAGE_GRAPHS)
