"""ECR repositories, one per image role."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass
class RegistryArgs:
    """Which repositories and how many images to keep."""

    roles: tuple[str, ...]
    keep_images: int
    # Deleting a stack should not silently delete images a rollback may still need.
    force_delete: bool = False
    tags: dict[str, str] = field(default_factory=dict)


def lifecycle_policy(keep_images: int) -> str:
    """Expire untagged layers quickly and keep only the newest tagged images."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "Drop untagged images after a day",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 1,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep the newest {keep_images} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": keep_images,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


class Registry(pulumi.ComponentResource):
    """Private repositories with scan on push, immutable tags and a lifecycle policy."""

    repository_urls: dict[str, pulumi.Output[str]]
    repository_arns: dict[str, pulumi.Output[str]]
    registry_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        """Create one repository per role."""
        super().__init__("jobqueue:infra:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository_urls = {}
        self.repository_arns = {}
        for role in args.roles:
            repo = aws.ecr.Repository(
                f"{name}-{role}",
                name=f"{name}-{role}",
                # Immutable tags: a tag names one build forever, so a rollback redeploys exactly
                # what ran before.
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                    scan_on_push=True
                ),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
                ],
                force_delete=args.force_delete,
                tags=args.tags,
                opts=child,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-{role}",
                repository=repo.name,
                policy=lifecycle_policy(args.keep_images),
                opts=child,
            )
            self.repository_urls[role] = repo.repository_url
            self.repository_arns[role] = repo.arn
            self.registry_id = repo.registry_id
        self.register_outputs({"repository_urls": self.repository_urls})
