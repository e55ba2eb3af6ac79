"""Stacks a test deploys for itself, removed afterwards whatever the outcome."""

from __future__ import annotations

import boto3


def delete_stack(stack_name: str) -> None:
    """Ask CloudFormation to delete the stack; never raises (cleanup must not mask a test result)."""
    try:
        boto3.client("cloudformation").delete_stack(StackName=stack_name)
    except Exception as exc:
        print(f"could not delete stack {stack_name}: {exc}")
