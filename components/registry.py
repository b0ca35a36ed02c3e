"""Registry containers: a pull-through cache per upstream, and the plain push registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from localdev.render import (
    CACHE_ENTRYPOINT_PATH,
    REGISTRY_CONFIG_PATH,
    render_cache_entrypoint,
    render_cache_env,
    render_push_env,
)
from localdev.settings import REGISTRY_API_PORT, REGISTRY_DEBUG_PORT, Mirror, Settings

#: Seconds a registry has to stop on destroy before it is killed.
DESTROY_GRACE_SECONDS = 15
#: Where distribution keeps its data inside the registry:3 image.
DATA_DIR = "/var/lib/registry"
#: Docker's json-file driver keeps every line forever by default: at most 3 files of 10 MB per registry.
LOG_DRIVER = "json-file"
LOG_OPTS = {"max-size": "10m", "max-file": "3"}


@dataclass
class RegistryArgs:
    """Inputs of one registry container."""

    container_name: str
    """Container name; also its alias on the kind network."""
    image: pulumi.Input[str]
    """Image the container runs (the pinned distribution image)."""
    env: Mapping[str, str]
    """Plain environment, rendered by ``localdev.render``."""
    port: int
    """API port published on 127.0.0.1."""
    metrics_port: int | None = None
    """Debug server (``/metrics``) port published on 127.0.0.1; None keeps it on the container network."""
    secret_env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Environment whose values are secrets (upstream password); kept secret in state."""
    retain_volume: bool = True
    """Keep the data volume when the stack is destroyed."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels on the container and its volume (the CLI's ``status`` finds containers by them)."""
    entrypoint: str | None = None
    """Script shipped into the container and run instead of the image's entrypoint."""


class Registry(pulumi.ComponentResource):
    """A distribution container with its own named volume, on 127.0.0.1 only."""

    container: docker.Container
    volume: docker.Volume
    endpoint: str

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("localdev:index:Registry", name, None, opts)
        labels = [docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())]
        self.volume = docker.Volume(
            f"{name}-data",
            name=f"{args.container_name}-data",
            labels=labels,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_volume),
        )
        plain = [f"{k}={v}" for k, v in sorted(args.env.items()) if k not in args.secret_env]
        secret: list[pulumi.Output[str]] = [
            pulumi.Output.secret(pulumi.Output.concat(k, "=", v)) for k, v in sorted(args.secret_env.items())
        ]
        ports = [docker.ContainerPortArgs(internal=REGISTRY_API_PORT, external=args.port, ip="127.0.0.1")]
        if args.metrics_port is not None:
            ports.append(docker.ContainerPortArgs(internal=REGISTRY_DEBUG_PORT, external=args.metrics_port, ip="127.0.0.1"))
        # The image's own entrypoint is replaced only where a script is shipped.
        shipped = args.entrypoint is not None
        uploads = (
            [docker.ContainerUploadArgs(file=CACHE_ENTRYPOINT_PATH, content=args.entrypoint, executable=True)]
            if shipped
            else None
        )
        self.container = docker.Container(
            f"{name}-container",
            name=args.container_name,
            image=args.image,
            envs=[*plain, *secret],
            ports=ports,
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=DATA_DIR)],
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())],
            restart="unless-stopped",
            log_driver=LOG_DRIVER,
            log_opts=LOG_OPTS,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{REGISTRY_API_PORT}/v2/"],
                interval="10s",
                timeout="3s",
                start_period="5s",
                retries=3,
            ),
            wait=True,
            wait_timeout=90,
            must_run=True,
            # Without it pulumi-docker removes the container by force at once (SIGKILL). With it the
            # registry gets SIGTERM first, as `docker stop` gives it, and finishes what it is writing.
            destroy_grace_seconds=DESTROY_GRACE_SECONDS,
            uploads=uploads,
            entrypoints=["/bin/sh", CACHE_ENTRYPOINT_PATH] if shipped else None,
            command=[REGISTRY_CONFIG_PATH] if shipped else None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.endpoint = f"http://127.0.0.1:{args.port}"
        self.register_outputs({"endpoint": self.endpoint, "containerName": self.container.name})


def cache_args(settings: Settings, mirror: Mirror, image: pulumi.Input[str], password: pulumi.Input[str] | None) -> RegistryArgs:
    """A pull-through cache for ``mirror``; Docker Hub credentials only go to the docker.io cache."""
    with_credentials = password is not None and mirror.host == "docker.io"
    return RegistryArgs(
        container_name=settings.cache_name(mirror),
        image=image,
        env=render_cache_env(settings, mirror, with_credentials=with_credentials),
        port=mirror.port,
        metrics_port=mirror.metrics_port,
        secret_env={"REGISTRY_PROXY_PASSWORD": password} if with_credentials and password is not None else {},
        retain_volume=settings.retain_caches,
        labels={**_labels(settings, "cache"), "localdev.upstream": mirror.host},
        entrypoint=render_cache_entrypoint(),
    )


def push_args(settings: Settings, image: pulumi.Input[str]) -> RegistryArgs:
    """The plain registry at ``localhost:<pushRegistryPort>``."""
    return RegistryArgs(
        container_name=settings.push_name,
        image=image,
        env=render_push_env(settings),
        port=settings.push_port,
        retain_volume=settings.retain_caches,
        labels=_labels(settings, "push"),
    )


def _labels(settings: Settings, role: str) -> dict[str, str]:
    return {"localdev.cluster": settings.cluster_name, "localdev.role": role}
