"""orbsim takes the user names OrbStack does: macOS short names with '.' and capitals."""

from __future__ import annotations

import pytest

from pytest_orbstack.sim import fsutil, guest
from pytest_orbstack.sim.engine import EngineError


@pytest.mark.parametrize("name", ["john.doe", "John", "j_doe-2", "_svc", "x" * 32, "1st"])
def test_macos_short_names_are_accepted(name: str) -> None:
    fsutil.check_username(name)


@pytest.mark.parametrize("name", ["", "-x", "bob smith", "a/b", "x" * 33, "1000", ".", "..", "a:b"])
def test_names_linux_refuses_are_refused(name: str) -> None:
    with pytest.raises(EngineError, match="invalid user name"):
        fsutil.check_username(name)


def test_ssh_aliases_replace_old_ones_and_skip_accounts_without_a_login_shell() -> None:
    passwd = (
        b"root:x:0:0:root:/root:/bin/bash\n"
        b"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        b"john.doe:x:501:501:John\rDoe \xe9:/home/john.doe:/bin/bash\n"  # any byte but a newline
        b"sync:x:4:65534:sync:/bin:/bin/sync\n"
        b"svc:x:900:900::/srv:/bin/false\n"
        b"short:x:7:7\n"
        b"root@old:x:0:0:root:/root:/bin/bash\n"
    )
    assert guest.aliases(passwd, "web") == (
        b"root:x:0:0:root:/root:/bin/bash\n"
        b"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
        b"john.doe:x:501:501:John\rDoe \xe9:/home/john.doe:/bin/bash\n"
        b"sync:x:4:65534:sync:/bin:/bin/sync\n"
        b"svc:x:900:900::/srv:/bin/false\n"
        b"short:x:7:7\n"
        b"root@web:x:0:0:root:/root:/bin/bash\n"
        b"john.doe@web:x:501:501:John\rDoe \xe9:/home/john.doe:/bin/bash\n"
        b"short@web:x:7:7\n"  # no shell field: a login shell, as awk saw it
    )
