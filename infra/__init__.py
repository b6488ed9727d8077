"""The Pulumi program that runs the job queue on AWS (`Pulumi.yaml`: `main: infra/`)."""
