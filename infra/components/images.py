"""The three container images: built and pushed during `pulumi up`, or an already pushed tag.

Building in the program (pulumi-docker-build's `Image`, a custom resource, with the registry's
credentials from `aws.ecr.get_authorization_token`, the way awsx's `ecr.Image` does it) is what
makes a first deploy one command: the repositories are created, then the images are pushed to
them, then the task definitions point at the pushed digests, all in one dependency graph.

`imageTag` skips the build: CI builds and pushes once (`make push`) and every stack deploys the
same tag, so what was tested is what runs. Either way tasks reference an immutable image: a
digest when built here, an immutable tag (the repositories refuse to overwrite one) otherwise.

Tags of built images are a digest of the build inputs, so an unchanged tree re-deploys the same
tag, and a changed one pushes a new tag instead of being refused by the immutable repository.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = "images/Dockerfile"
# What the Dockerfile copies into the images: a change to anything else needs no new image.
BUILD_INPUTS = ("pyproject.toml", "uv.lock", "README.md", DOCKERFILE, "service")
PLATFORMS = {
    "X86_64": docker_build.Platform.LINUX_AMD64,
    "ARM64": docker_build.Platform.LINUX_ARM64,
}


def source_digest(root: Path = ROOT, inputs: Iterable[str] = BUILD_INPUTS) -> str:
    """A short digest of every file the images are built from (names and contents)."""
    digest = hashlib.sha256()
    for entry in inputs:
        path = root / entry
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@dataclass
class ImagesArgs:
    """Where to push, for which CPU, and whether to build at all."""

    repository_urls: dict[str, pulumi.Output[str]]
    registry_id: pulumi.Input[str]
    cpu_architecture: str
    # An already pushed tag (CI-built images promoted across stacks): no build.
    image_tag: str | None = None


class Images(pulumi.ComponentResource):
    """One image per role, referenced by the task definitions through `uris`."""

    uris: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: ImagesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Build and push each role's image, or reference the given tag."""
        super().__init__("jobqueue:infra:Images", name, None, opts)
        if args.image_tag is not None:
            self.uris = {
                role: pulumi.Output.concat(url, ":", args.image_tag)
                for role, url in args.repository_urls.items()
            }
        else:
            self.uris = self._build(name, args)
        self.register_outputs({"uris": self.uris})

    def _build(self, name: str, args: ImagesArgs) -> dict[str, pulumi.Output[str]]:
        credentials = aws.ecr.get_authorization_token_output(
            registry_id=args.registry_id, opts=pulumi.InvokeOptions(parent=self)
        )
        tag = f"src-{source_digest()}"
        # The engine runs the program from the project directory; a relative context keeps the
        # state the same on every machine that deploys.
        context = os.path.relpath(ROOT)
        uris = {}
        for role, url in args.repository_urls.items():
            image = docker_build.Image(
                f"{name}-{role}",
                push=True,
                context=docker_build.BuildContextArgs(location=context),
                dockerfile=docker_build.DockerfileArgs(location=f"{context}/{DOCKERFILE}"),
                target=role,
                platforms=[PLATFORMS[args.cpu_architecture]],
                tags=[pulumi.Output.concat(url, ":", tag)],
                registries=[
                    docker_build.RegistryArgs(
                        address=url.apply(lambda u: u.split("/", 1)[0]),
                        username=credentials.user_name,
                        password=pulumi.Output.secret(credentials.password),
                    )
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )
            # `ref` is the pushed tag with its digest: tasks run exactly the image just built.
            uris[role] = image.ref
        return uris
