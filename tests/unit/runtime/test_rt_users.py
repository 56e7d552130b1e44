"""Docker-style user strings against an image's passwd and group files."""

from __future__ import annotations

from pathlib import Path

import pytest

from timonel.node_agent.runtime.container.users import Resolved, UserError, resolve


@pytest.fixture
def image(tmp_path: Path) -> str:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n# comment\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    (tmp_path / "etc/group").write_text("root:x:0:\ntty:x:5:app\napp:x:1000:\nstaff:x:50:app,other\n")
    return str(tmp_path)


@pytest.mark.parametrize(("user", "expected"), [
    ("app", Resolved(1000, 1000, [5, 50], "/home/app")),
    ("1000", Resolved(1000, 1000, [5, 50], "/home/app")),
    ("app:staff", Resolved(1000, 50, [5], "/home/app")),
    ("app:7", Resolved(1000, 7, [5, 50], "/home/app")),
    ("4242", Resolved(4242, 0, [], "/")),  # unknown numeric ids are fine, as in Docker
    ("4242:4242", Resolved(4242, 4242, [], "/")),
    ("nobody", Resolved(65534, 65534, [], "/nonexistent")),
])
def test_resolve(image: str, user: str, expected: Resolved) -> None:
    assert resolve(user, [], image) == expected


def test_extra_groups_are_kept(image: str) -> None:
    assert resolve("app", [5, 99], image).groups == [5, 50, 99]


def test_unknown_names_say_where_to_look(image: str) -> None:
    with pytest.raises(UserError, match="user 'ghost' not found in the image's /etc/passwd"):
        resolve("ghost", [], image)
    with pytest.raises(UserError, match="group 'ghosts' not found"):
        resolve("app:ghosts", [], image)
