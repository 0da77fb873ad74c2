"""The engine interface: what the CLI and the engine's helper modules share, and nothing else.

``engine.py`` chooses an engine; ``namespace.py`` and ``plain.py`` are the
engines.  The modules that do the namespace engine's work (``fsutil``, ``rootfs``,
``network``, ``guest``, ``transfer``) import this module, never an engine,
so no import runs back up: they get the engine they work for as a :class:`MachineAccess`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Optional, Protocol, TypedDict

NOT_ROOT = (
    "orbsim needs root to create isolated machines: run it as root, "
    "or set ORBSIM_MODE=plain to run commands on the host unisolated"
)


class EngineError(Exception):
    """One user-facing line that says what is wrong and how to fix it."""


# The classes below exist for the type checker only: every orbctl command loads this module,
# and creating Protocol and TypedDict classes costs about a millisecond at each start.
if TYPE_CHECKING:

    class EngineInfo(TypedDict):
        """``engine.json`` of a namespace machine: its default user."""

        username: str
        uid: int
        gid: int

    class Runtime(TypedDict, total=False):
        """``runtime.json`` of a namespace machine while it runs (``outer`` alone while it boots)."""

        #: host pid and start time of the ``unshare`` that made the namespaces
        outer: int
        outer_start: Optional[int]
        #: host pid and start time of the machine's init
        pid: int
        start: int
        #: the init's pid namespace (``pid:[inode]``)
        pidns: str
        #: the machine's address and the host side of its veth
        ip: str
        veth: str

    class Engine(Protocol):
        """What the CLI needs from a machine implementation (see ``engine.py``)."""

        kind: str

        def preflight(self) -> None: ...

        def prepare(self, mdir: str, *, hostname: str, username: str) -> None: ...

        def boot(self, mdir: str, *, hostname: str) -> str: ...

        def running(self, mdir: str) -> bool: ...

        def seed_cloud_init(
            self, mdir: str, *, user_data: bytes, instance_id: str, hostname: str
        ) -> None: ...

        def exec(
            self,
            mdir: str,
            argv: list[str],
            *,
            user: str,
            workdir: Optional[str],
            env: dict[str, str],
            replace: bool = False,
        ) -> int: ...

        def halt(self, mdir: str) -> None: ...

        def destroy(self, mdir: str) -> None: ...

        def clone(self, src: str, dst: str, *, hostname: str) -> None: ...

        def set_hostname(self, mdir: str, hostname: str) -> None: ...

        def push(self, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int: ...

        def pull(self, mdir: str, *, user: str, sources: list[str], dest: Optional[str]) -> int: ...

    class MachineAccess(Protocol):
        """What the boot jobs (``guest.py``) and ``push``/``pull`` (``transfer.py``) need of the engine."""

        @property
        def environ(self) -> Mapping[str, str]: ...

        def runtime(self, mdir: str) -> Optional[Runtime]: ...

        def enter_argv(
            self, mdir: str, user: str, workdir: Optional[str], env: Mapping[str, str], argv: list[str]
        ) -> tuple[list[str], dict[str, str]]: ...
