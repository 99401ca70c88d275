"""mkdocs hooks of the hsgd site (see mkdocs.yml: `hooks`).

`on_files` adds the notebooks of `notebooks/` as pages `notebooks/NAME.ipynb` (before
mkdocs-jupyter converts them), so they stay in one place, outside `docs/`.

PENDING lists cross-references in docstrings of files owned by another developer that do not
resolve yet, each with the fix it needs; their "could not find cross-reference target"
warnings are dropped so that `mkdocs build --strict` stays usable meanwhile. Every other
warning still fails the strict build, and an entry that no longer occurs is reported at the end
of the build so the list can only shrink.
"""

import logging
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]

# target as autorefs reports it -> the fix in the docstring
PENDING: dict[str, str] = {
}

_seen: set[str] = set()


class _Pending(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        for target in PENDING:
            if f"Could not find cross-reference target '{target}'" in message:
                _seen.add(target)
                return False
        return True


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File(f"notebooks/{path.name}", src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


def on_config(config):
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("mkdocs.plugins.mkdocs_autorefs"):
            logging.getLogger(name).addFilter(_Pending())


def on_post_build(config):
    log = logging.getLogger("mkdocs.hooks")
    for target in sorted(_seen):
        log.info("pending cross-reference %s: %s", target, PENDING[target])
    for target in sorted(set(PENDING) - _seen):
        log.info("docs/hooks.py: PENDING[%r] no longer occurs; remove it", target)
