"""The first build on a fresh machine: what happens when debootstrap is missing."""

from __future__ import annotations

import pytest

from sandbox.image import _os_release, debootstrap_plan

DEBIAN = {"ID": "debian", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}
UBUNTU = {"ID": "ubuntu", "ID_LIKE": "debian"}
MINT = {"ID": "linuxmint", "ID_LIKE": "ubuntu debian"}
FEDORA = {"ID": "fedora", "PRETTY_NAME": "Fedora Linux 40"}


@pytest.mark.parametrize("release", [DEBIAN, UBUNTU, MINT])
def test_root_on_a_debian_family_host_installs_debootstrap_and_says_so(release):
    plan, line = debootstrap_plan(False, 0, release, have_apt=True)
    assert plan == "install"
    assert "apt-get install debootstrap" in line and "\n" not in line


@pytest.mark.parametrize("euid, release, have_apt, expect", [
    (1000, DEBIAN, True, "sudo runaway image build"),        # not root: say how to become it
    (0, FEDORA, False, "Fedora Linux 40 is not Debian"),     # not ours to install: name the package
    (0, {}, False, "install your distribution's debootstrap"),
    (1000, None, None, "needs root"),                         # installed, but the build needs root
])
def test_elsewhere_one_line_names_what_to_do(euid, release, have_apt, expect):
    have = release is None
    plan, line = debootstrap_plan(have, euid, release or {}, have_apt=bool(have_apt))
    assert plan == "refuse"
    assert expect in line and "\n" not in line


def test_nothing_to_do_when_root_has_debootstrap():
    assert debootstrap_plan(True, 0, FEDORA, have_apt=False) == ("ready", "")


def test_os_release_of_this_host_is_read(tmp_path):
    f = tmp_path / "os-release"
    f.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n# comment\n')
    assert _os_release(str(f)) == {"PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)", "ID": "debian"}
    assert _os_release(str(tmp_path / "missing")) == {}
