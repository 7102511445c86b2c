"""ftn.assets.find_asset: argument, then environment variable, then ../shared beside a source checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftn import assets
from ftn.assets import AssetNotFoundError, find_asset, source_checkout

ENV = "FTN_TEST_ASSET"
NAME = "metrics/thing.npz"


def checkout(root: Path) -> Path:
    """A source-checkout layout: ``root/repo/{pyproject.toml, src/ftn}``; returns the package folder."""
    package = root / "repo" / "src" / "ftn"
    package.mkdir(parents=True)
    (root / "repo" / "pyproject.toml").write_text("[project]\nname = 'ftn'\n")
    return package


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fake checkout whose ../shared holds the asset, plus an env file and an explicit file."""
    monkeypatch.setattr(assets, "_PACKAGE_DIR", checkout(tmp_path))
    monkeypatch.delenv(ENV, raising=False)
    return {
        "shared": touch(tmp_path / "shared" / NAME),
        "env": touch(tmp_path / "env" / "thing.npz"),
        "explicit": touch(tmp_path / "explicit" / "thing.npz"),
    }


def test_explicit_argument_wins(layout, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(layout["env"]))
    assert find_asset(NAME, path=layout["explicit"], env_var=ENV) == layout["explicit"]


def test_environment_variable_beats_shared(layout, monkeypatch) -> None:
    monkeypatch.setenv(ENV, str(layout["env"]))
    assert find_asset(NAME, env_var=ENV) == layout["env"]


def test_shared_beside_checkout_is_the_last_resort(layout, monkeypatch) -> None:
    assert find_asset(NAME, env_var=ENV) == layout["shared"]
    monkeypatch.setenv(ENV, "")  # empty counts as unset
    assert find_asset(NAME, env_var=ENV) == layout["shared"]


def test_folders_are_assets_too(layout) -> None:
    assert find_asset("metrics", env_var=ENV) == layout["shared"].parent


def test_a_wrong_argument_or_variable_never_falls_back(layout, monkeypatch, tmp_path) -> None:
    with pytest.raises(AssetNotFoundError, match="does not exist"):
        find_asset(NAME, path=tmp_path / "absent.npz", env_var=ENV)
    monkeypatch.setenv(ENV, str(tmp_path / "absent.npz"))
    with pytest.raises(AssetNotFoundError, match=f"{ENV}=.*does not exist"):
        find_asset(NAME, env_var=ENV)


def test_message_names_all_three_ways(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(assets, "_PACKAGE_DIR", checkout(tmp_path))  # no ../shared at all
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(FileNotFoundError) as info:
        find_asset(NAME, env_var=ENV, what="the thing", option="thing=PATH", hint="Ask Bob.")
    message = str(info.value)
    assert message.startswith("the thing not found")
    assert "thing=PATH" in message and f"{ENV}=PATH" in message
    assert str(tmp_path / "shared" / NAME) in message and message.endswith("Ask Bob.")
    assert "\n" not in message


def test_installed_layout_never_looks_at_shared(tmp_path, monkeypatch) -> None:
    # a wheel installed in a venv: .../lib/python3.x/site-packages/ftn, with a shared/ folder (and a
    # pyproject.toml) placed where a walk up the parents would find them
    package = tmp_path / "venv" / "lib" / "python3.12" / "site-packages" / "ftn"
    package.mkdir(parents=True)
    for parent in package.parents:
        if parent == tmp_path.parent:
            break
        touch(parent / "shared" / NAME)
        touch(parent / "pyproject.toml")
    monkeypatch.setattr(assets, "_PACKAGE_DIR", package)
    monkeypatch.delenv(ENV, raising=False)
    assert source_checkout() is None and assets.shared_folder() is None
    with pytest.raises(AssetNotFoundError) as info:
        find_asset(NAME, env_var=ENV)
    message = str(info.value)
    assert "not in a source checkout" in message and f"../shared/{NAME}" in message and ENV in message


def test_this_test_run_is_a_source_checkout() -> None:
    root = Path(__file__).resolve().parents[1]
    if Path(assets.__file__).resolve().parent != root / "src" / "ftn":
        pytest.skip("ftn is not imported from this checkout's src/")
    assert source_checkout() == root
