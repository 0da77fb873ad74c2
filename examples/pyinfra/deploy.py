"""A pyinfra deploy: the orb-hello package from a local .deb, its config file and its user.

Run by test_pyinfra.py as ``pyinfra -y @orbstack/MACHINE deploy.py`` with
``ORB_HELLO_DEB`` naming the package file on this computer.
"""

import os

from pyinfra.operations import apt, files, server

files.put(
    name="Upload the orb-hello package",
    src=os.environ["ORB_HELLO_DEB"],
    dest="/tmp/orb-hello.deb",
)
apt.deb(name="Install orb-hello", src="/tmp/orb-hello.deb", _sudo=True)
server.user(  # noqa: S604 - pyinfra's shell= is the login shell of the user
    name="Add the hello user",
    user="hello",
    home="/srv/hello",
    shell="/bin/sh",
    system=True,
    ensure_home=True,
    _sudo=True,
)
files.put(
    name="Write the orb-hello config",
    src=os.path.join(os.path.dirname(os.path.abspath(__file__)), "orb-hello.conf"),
    dest="/etc/orb-hello.conf",
    user="root",
    group="root",
    mode="644",
    _sudo=True,
)
