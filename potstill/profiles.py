"""Named profiles: partial params that take params.yaml from one set-up to another in one command.

    python -m potstill.profiles tiny           # apply configs/profiles/tiny.yaml to params.yaml
    python -m potstill.profiles --list         # the profiles there, with their first comment line

A profile is a YAML file with the same sections as params.yaml and only the keys it changes.
Applying it edits params.yaml in place with a round-trip YAML library, so every comment and the
key order stay; a key the profile changes keeps its comment. A section or key that params.yaml
does not have is refused (a typo must not pass silently), and the result is validated before
anything is written. The profile's name goes into params.yaml's top-level `profile` key, where
`dvc exp show` and `dvc params diff` show it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.errors import ParamsError
from potstill.params import SECTIONS, validate_all

PROFILE_DIR = Path("configs/profiles")


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, order and quoting survive
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long string the user wrote on one line
    yaml.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own list style
    yaml.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return yaml


def _merge(target, patch: dict, where: str, source: Path) -> None:
    """Write `patch` into the round-trip mapping `target`, refusing keys it does not have."""
    for key, value in patch.items():
        if key not in target:
            allowed = ", ".join(str(k) for k in target)
            raise ParamsError(f"{source}: {where}{key}: params.yaml has no such key; allowed here: {allowed}")
        if isinstance(value, dict) and isinstance(target[key], dict):
            _merge(target[key], value, f"{where}{key}.", source)
        else:
            target[key] = value


def apply_profile(profile: Path, params_path: Path = Path("params.yaml")) -> str:
    """Return params.yaml's new text after applying `profile` to it in place (comments kept)."""
    yaml = _yaml()
    try:
        patch = yaml.load(profile.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        names = ", ".join(sorted(path.stem for path in profile.parent.glob("*.yaml"))) or "none"
        raise ParamsError(f"{profile}: no such profile; available in {profile.parent}: {names}") from None
    if not isinstance(patch, dict):
        raise ParamsError(f"{profile}: expected a mapping of params.yaml sections, got {type(patch).__name__}")
    params = yaml.load(params_path.read_text(encoding="utf-8"))
    unknown = [key for key in patch if key not in SECTIONS]
    if unknown:
        raise ParamsError(f"{profile}: unknown section(s) {unknown}; allowed: {sorted(SECTIONS)}")
    _merge(params, {key: patch[key] for key in patch}, "", profile)
    params["profile"] = profile.stem
    buffer = io.StringIO()
    yaml.dump(params, buffer)
    text = buffer.getvalue()
    validate_all(text, source=f"{params_path} with {profile}")  # nothing is written unless it validates
    params_path.write_text(text, encoding="utf-8")
    return text


def first_comment(profile: Path) -> str:
    """Return a profile's first comment line (what it is for), or its name."""
    for line in profile.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return profile.stem


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    name: Annotated[str, typer.Argument(help="profile name (configs/profiles/<name>.yaml) or a path")] = "",
    params: Annotated[Path, typer.Option(help="params.yaml to edit in place")] = Path("params.yaml"),
    profiles: Annotated[Path, typer.Option(help="folder of profiles")] = PROFILE_DIR,
    list_: Annotated[bool, typer.Option("--list", help="list the profiles and exit")] = False,
) -> None:
    """Apply a named profile to params.yaml, keeping its comments; then `dvc repro` rebuilds what changed."""
    if list_ or not name:
        for path in sorted(profiles.glob("*.yaml")):
            typer.echo(f"{path.stem:24} {first_comment(path)}")
        return
    path = Path(name) if name.endswith(".yaml") else profiles / f"{name}.yaml"
    apply_profile(path, params)
    typer.echo(f"params: applied {path} to {params} (profile: {path.stem}); run `dvc repro`")


if __name__ == "__main__":
    app()
