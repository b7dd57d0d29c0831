"""Runs `sam local` functions on Docker's host network, so that every packet stays on loopback.

SAM CLI accepts `--docker-network host` (or SAM_DOCKER_NETWORK=host) but, since 1.86, ignores
it: `samcli.local.docker.container.Container.create` only connects containers to networks other
than "host" and never sets `network_mode` (aws/aws-sam-cli#3609, #6347). The Lambda container
then sits on Docker's bridge, where 127.0.0.1 is the container itself and moto cannot be reached.

This module, loaded from a `.pth` file in SAM's venv, wraps two calls when the network is "host":
- docker-py's `ContainerCollection.create` gets `network_mode="host"` and no port mappings;
- the runtime interface emulator in the container is told to listen on the loopback port SAM
  picked for the container (`--runtime-interface-emulator-address`) and to serve the Runtime API
  on a free loopback port of its own (`--runtime-api-address`), so that containers side by side
  (warm containers, several functions) do not collide.

It is written against SAM CLI 1.170.0, which tests/run pins. `applied()` says whether the hooks
are in; tests/run fails when they are not (SAM's internals changed).
"""

import importlib.abc
import importlib.util
import socket
import sys
import threading

_MODULE = "samcli.local.docker.container"
_state = threading.local()


def _loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hook(container_module):
    try:
        from docker.models.containers import ContainerCollection

        container_cls = container_module.Container
        create = container_cls.create
        docker_create = ContainerCollection.create
    except (ImportError, AttributeError) as e:
        sys.stderr.write(f"sam_hostnet: not applied: {e!r}\n")
        return
    if getattr(container_cls, "_tocsin_hostnet", False):
        return

    def docker_create_on_host(self, image, command=None, **kwargs):
        if getattr(_state, "host", False):
            kwargs.pop("ports", None)
            kwargs["network_mode"] = "host"
        return docker_create(self, image, command, **kwargs)

    def create_on_host(self, *args, **kwargs):
        if getattr(self, "network_id", None) != "host":
            return create(self, *args, **kwargs)
        entrypoint = list(getattr(self, "_entrypoint", None) or [])
        if entrypoint and entrypoint[0].endswith("aws-lambda-rie") and (
            "--runtime-interface-emulator-address" not in entrypoint
        ):
            interface = getattr(self, "_container_host_interface", None) or "127.0.0.1"
            self._entrypoint = [
                entrypoint[0],
                "--runtime-interface-emulator-address",
                f"{interface}:{self.rapid_port_host}",
                "--runtime-api-address",
                f"127.0.0.1:{_loopback_port()}",
                *entrypoint[1:],
            ]
        _state.host = True
        try:
            return create(self, *args, **kwargs)
        finally:
            _state.host = False

    ContainerCollection.create = docker_create_on_host
    container_cls.create = create_on_host
    container_cls._tocsin_hostnet = True


class _OnImport(importlib.abc.MetaPathFinder):
    """Hooks SAM's container module right after it is imported."""

    def find_spec(self, name, path=None, target=None):
        if name != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_hook(module):
            exec_module(module)
            _hook(module)

        spec.loader.exec_module = exec_and_hook
        return spec


def install():
    if _MODULE in sys.modules:
        _hook(sys.modules[_MODULE])
    elif not any(isinstance(f, _OnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _OnImport())


def applied():
    import samcli.local.docker.container as container_module

    return getattr(container_module.Container, "_tocsin_hostnet", False)
