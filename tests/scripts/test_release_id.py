"""scripts/release-id: the release a checkout deploys, as the image's tag."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "release-id"


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


@pytest.fixture()
def checkout(tmp_path):
    """A repository laid out like this one: scripts/release-id and an app/ folder."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "app").mkdir()
    shutil.copy2(SCRIPT, repo / "scripts" / "release-id")
    (repo / "app" / "main.py").write_text("print('v1')\n")
    (repo / "README.md").write_text("readme\n")
    git(repo, "init", "-q")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return repo


def release_id(repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(repo / "scripts" / "release-id")], capture_output=True, text=True, check=False
    )


def commit(repo: Path, message: str) -> None:
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", message)


def test_a_clean_checkout_is_its_last_app_commit(checkout):
    app_commit = git(checkout, "log", "-1", "--format=%H", "--", "app")[:12]
    assert release_id(checkout).stdout.strip() == app_commit
    # A commit that does not touch app/ keeps the release (and its image).
    (checkout / "README.md").write_text("changed\n")
    commit(checkout, "docs")
    assert release_id(checkout).stdout.strip() == app_commit
    # One that does names a new release.
    (checkout / "app" / "main.py").write_text("print('v2')\n")
    commit(checkout, "app")
    assert release_id(checkout).stdout.strip() == git(checkout, "rev-parse", "HEAD")[:12]


def test_uncommitted_changes_get_their_own_release(checkout):
    clean = release_id(checkout).stdout.strip()
    (checkout / "app" / "main.py").write_text("print('edited')\n")
    first = release_id(checkout).stdout.strip()
    assert re.fullmatch(re.escape(clean) + r"-dirty-[0-9a-f]{8}", first)
    assert release_id(checkout).stdout.strip() == first  # the same state, the same id
    (checkout / "app" / "new.py").write_text("x = 1\n")  # an untracked file counts too
    second = release_id(checkout).stdout.strip()
    assert second.startswith(f"{clean}-dirty-") and second != first
    (checkout / "app" / "new.py").unlink()
    (checkout / "app" / "main.py").write_text("print('v1')\n")
    assert release_id(checkout).stdout.strip() == clean


def test_no_checkout_says_how_to_name_the_release(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy2(SCRIPT, tmp_path / "scripts" / "release-id")
    result = release_id(tmp_path)
    assert result.returncode == 1
    assert "is not a git checkout with a commit" in result.stderr
    assert "-e morpheus_release_id=<id>" in result.stderr
