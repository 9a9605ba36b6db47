"""A 3-node RabbitMQ cluster on this one machine, started from the installed ``rabbitmq-server``.

Each node gets its own name (unique per run), AMQP and Erlang distribution ports (free ports
picked at start, so neither the machine's own broker on 5672/25672 nor a concurrent run can
clash), data, log and enabled-plugins files, and its own config file: Debian's
``/etc/rabbitmq/rabbitmq.conf`` pins the machine broker's listener, which would otherwise win
over ``RABBITMQ_NODE_PORT``. Every folder belongs to the ``rabbitmq`` user, because Debian's
``rabbitmq-server`` and ``rabbitmqctl`` switch to that user. The nodes share that user's Erlang
cookie, so ``rabbitmqctl join_cluster`` needs none set.

Faults a test can cause:

- :meth:`RabbitCluster.kill` sends SIGKILL to a node's Erlang VM: a crash, nothing flushed.
- :meth:`RabbitCluster.stop_app` / :meth:`RabbitCluster.start_app`: a clean stop and start, as
  a rolling restart does.
- :meth:`RabbitCluster.partition` cuts one node's Erlang distribution links to the others and
  keeps them cut (a wrong cookie for those peers makes every reconnection fail), while AMQP
  clients still reach every node: a partition between the brokers, not between clients and
  brokers. With ``cluster_partition_handling = pause_minority`` (set here, as production
  clusters should) the cut-off node pauses and closes its client connections.
  :meth:`RabbitCluster.heal` restores the cookie and the node rejoins.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

#: Start-up bound for the whole cluster; three nodes take about 25 s on 2 busy cores.
START_TIMEOUT_S = 150.0
#: Bound on one ``rabbitmqctl`` call, so a wedged node fails the test instead of hanging it.
CTL_TIMEOUT_S = 60.0
#: The user Debian's scripts switch to; every folder a node writes must be theirs.
RABBITMQ_USER = "rabbitmq"
NODE_LETTERS = ("a", "b", "c")


class ClusterUnavailable(Exception):
    """This machine cannot run the cluster (no ``rabbitmq-server``, or not allowed to)."""


@dataclass(frozen=True)
class ClusterNode:
    """One node: its Erlang name, its ports and its folder."""

    name: str
    amqp_port: int
    dist_port: int
    folder: Path

    @property
    def url(self) -> str:
        """``amqp://`` URL of this node (guest may log in over loopback: ``loopback_users``)."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/%2F"

    @property
    def pid_file(self) -> Path:
        """Where ``rabbitmq-server`` writes the Erlang VM's pid."""
        return self.folder / "pid"

    def environment(self) -> dict[str, str]:
        """The ``RABBITMQ_*`` variables that make ``rabbitmq-server`` start this node."""
        return {
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.folder / "advanced.config"),
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
        }


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice, never 5672 or 25672)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_can_run() -> None:
    """Raise :class:`ClusterUnavailable` saying why this machine cannot run the cluster."""
    for tool in ("rabbitmq-server", "rabbitmqctl"):
        if shutil.which(tool) is None:
            raise ClusterUnavailable(f"{tool} is not installed (Debian package rabbitmq-server)")
    try:
        pwd.getpwnam(RABBITMQ_USER)
    except KeyError:
        raise ClusterUnavailable(f"no {RABBITMQ_USER!r} user to run the nodes as") from None
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting nodes as the rabbitmq user needs root")


class RabbitCluster:
    """Three clustered nodes; use as a context manager, which always tears them down."""

    def __init__(self) -> None:
        run = uuid.uuid4().hex[:6]
        self.base = Path(tempfile.mkdtemp(prefix=f"rabbit-cluster-{run}-"))
        self.nodes = [
            ClusterNode(f"jt{run}-{letter}@localhost", free_port(), free_port(), self.base / letter)
            for letter in NODE_LETTERS
        ]

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> RabbitCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Write each node's files, boot the nodes, and join ``b`` and ``c`` to ``a``."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            node.folder.mkdir(parents=True)
            # No plugins: the machine-wide management plugin would want port 15672.
            (node.folder / "enabled_plugins").write_text("[].\n")
            (node.folder / "rabbitmq.conf").write_text(
                f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\n"
                "loopback_users = none\n"
                "cluster_partition_handling = pause_minority\n"
            )
            (node.folder / "advanced.config").write_text(
                "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}].\n"
            )
        user = pwd.getpwnam(RABBITMQ_USER)
        for path in [self.base, *self.base.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        self.base.chmod(0o755)
        for node in self.nodes:
            self.boot(node)
        for node in self.nodes:
            self.await_startup(node, deadline)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
        self.await_running(self.nodes, deadline)

    def close(self) -> None:
        """Stop every node (SIGKILL for one that will not stop) and remove the folders."""
        for node in self.nodes:
            if self.vm_pid(node) is None:
                continue
            try:
                self.ctl(node, "stop", timeout=30)
            except (subprocess.SubprocessError, OSError):
                pass
            pid = self.vm_pid(node)
            if pid is not None:
                self._kill_pid(pid)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- faults --------------------------------------------------------------------------------

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL the node's Erlang VM: a crash."""
        pid = self.vm_pid(node)
        if pid is None:
            raise AssertionError(f"{node.name} is not running")
        self._kill_pid(pid)

    def restart_killed(self, node: ClusterNode, timeout: float = 90.0) -> None:
        """Boot a killed node again; it rejoins the cluster it belonged to."""
        self.boot(node)
        deadline = time.monotonic() + timeout
        self.await_startup(node, deadline)
        self.await_running(self.nodes, deadline)

    def stop_app(self, node: ClusterNode) -> None:
        """Stop RabbitMQ on ``node`` cleanly (the Erlang VM stays up)."""
        self.ctl(node, "stop_app")

    def start_app(self, node: ClusterNode, timeout: float = 90.0) -> None:
        """Start RabbitMQ on ``node`` again and wait until the cluster has all nodes running."""
        self.ctl(node, "start_app", timeout=timeout)
        self.await_running(self.nodes, time.monotonic() + timeout)

    def partition(self, node: ClusterNode) -> None:
        """Cut ``node`` off from its peers at the Erlang distribution level, and keep it cut."""
        peers = ", ".join(f"'{peer.name}'" for peer in self.nodes if peer != node)
        self.ctl(
            node,
            "eval",
            f"[begin erlang:set_cookie(N, partitioned), erlang:disconnect_node(N) end"
            f" || N <- [{peers}]].",
        )

    def heal(self, node: ClusterNode, timeout: float = 90.0) -> None:
        """Undo :meth:`partition`: the node reconnects, resumes, and the cluster is whole."""
        peers = ", ".join(f"'{peer.name}'" for peer in self.nodes if peer != node)
        self.ctl(
            node,
            "eval",
            f"[begin erlang:set_cookie(N, erlang:get_cookie()), net_kernel:connect_node(N) end"
            f" || N <- [{peers}]].",
        )
        self.await_running(self.nodes, time.monotonic() + timeout)

    # -- queries -------------------------------------------------------------------------------

    def urls(self, first: int = 0) -> str:
        """``AMQP_URL`` listing every node, starting with node number ``first``."""
        ordered = self.nodes[first:] + self.nodes[:first]
        return ",".join(node.url for node in ordered)

    def node_named(self, name: str) -> ClusterNode:
        """The node whose Erlang name is ``name``."""
        return next(node for node in self.nodes if node.name == name)

    def queue_leader(self, queue: str, via: ClusterNode | None = None) -> ClusterNode:
        """The node hosting the Raft leader of quorum queue ``queue``."""
        listing = self.ctl(
            via or self.nodes[0], "list_queues", "-q", "--no-table-headers", "name", "leader"
        )
        for line in listing.splitlines():
            name, _, leader = line.partition("\t")
            if name == queue and leader.strip():
                return self.node_named(leader.strip())
        raise AssertionError(f"no leader listed for {queue!r}:\n{listing}")

    def queue_messages(self, queue: str, via: ClusterNode) -> int:
        """Messages in ``queue``, ready and unacknowledged (-1 when not listed)."""
        listing = self.ctl(via, "list_queues", "-q", "--no-table-headers", "name", "messages")
        for line in listing.splitlines():
            name, _, count = line.partition("\t")
            if name == queue:
                return int(count)
        return -1

    def running_nodes(self, via: ClusterNode) -> set[str]:
        """Names of the nodes ``via`` sees running (itself included when it runs)."""
        output = self.ctl(via, "eval", "rabbit_nodes:all_running().", timeout=15)
        return {part.strip(" []'\n") for part in output.split(",") if part.strip(" []'\n")}

    def vm_pid(self, node: ClusterNode) -> int | None:
        """The pid of ``node``'s Erlang VM, or None when it is not running."""
        try:
            pid = int(node.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def log_tail(self, node: ClusterNode, lines: int = 30) -> str:
        """The end of ``node``'s log, for failure messages."""
        log = node.folder / "log" / f"{node.name}.log"
        if not log.exists():
            return f"(no log for {node.name})"
        return f"--- {node.name} ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-lines:]
        )

    # -- plumbing ------------------------------------------------------------------------------

    def ctl(self, node: ClusterNode, *args: str, timeout: float = CTL_TIMEOUT_S) -> str:
        """Run ``rabbitmqctl -n <node> ARGS``; return stdout, raise with stderr on failure."""
        result = subprocess.run(
            ["rabbitmqctl", "-n", node.name, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"rabbitmqctl -n {node.name} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout

    def boot(self, node: ClusterNode) -> None:
        """``rabbitmq-server -detached`` for ``node`` (returns before the node is up)."""
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env={**os.environ, **node.environment()},
            check=True,
            timeout=CTL_TIMEOUT_S,
            capture_output=True,
        )

    def await_startup(self, node: ClusterNode, deadline: float) -> None:
        """Wait until RabbitMQ runs on ``node``; fail with its log at ``deadline``."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{node.name} did not start in time; its log ends:\n{self.log_tail(node)}"
                )
            try:
                self.ctl(
                    node,
                    "await_startup",
                    "--timeout",
                    str(max(int(remaining), 1)),
                    timeout=remaining + 5,
                )
                return
            except (AssertionError, subprocess.TimeoutExpired):
                # The node may not even answer yet (its VM still booting): ask again.
                time.sleep(0.5)

    def await_running(self, nodes: list[ClusterNode], deadline: float) -> None:
        """Wait until every node in ``nodes`` sees all of them running."""
        wanted = {node.name for node in nodes}
        while True:
            try:
                if all(self.running_nodes(node) >= wanted for node in nodes):
                    return
            except (AssertionError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"cluster nodes {sorted(wanted)} not all running in time")
            time.sleep(0.5)

    @staticmethod
    def _kill_pid(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
