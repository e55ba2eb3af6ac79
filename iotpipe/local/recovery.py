"""Adopt a lost stack's retained resources before deploying it again (CloudFormation resource import).

After a ``kill -9`` of the embedded emulator without a state snapshot (or a LocalStack restart), the
stack and its tables are gone but the archive bucket is not: S3 objects are on disk. The template's
bucket has a fixed name and ``DeletionPolicy: Retain``, so creating the stack again failed with
``ArchiveBucket ... already exists``, left it in ROLLBACK_COMPLETE, and every later ``make up`` failed
the same way; only ``--fresh`` (which deleted the archive) got out (issue 11, finding 2). The same
happens on AWS after ``delete-stack``: retained resources stay behind under their names.

CloudFormation's answer is an IMPORT change set: a stack is created around the existing resources, and
the ordinary deploy then updates it to the whole template. ``adopt_retained`` finds the template's
retained resources (``DeletionPolicy: Retain`` with a name derived from the stack name, account and
region) that exist while the stack does not, and imports them with an import template that declares
only them and only their literal properties (an import must not create or change anything else; the
deploy that follows adds encryption, policies and everything else). ministack 1.5.33 implements IMPORT
change sets for new stacks (``services/cloudformation/changesets.py``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from iotpipe.ops.template import load_template

# Types whose physical name the template sets, and the property that holds it.
NAME_PROPERTY = {"AWS::S3::Bucket": "BucketName", "AWS::DynamoDB::Table": "TableName"}
GONE = ("ROLLBACK_COMPLETE", "DELETE_COMPLETE")
_PSEUDO = re.compile(r"\$\{(AWS::StackName|AWS::AccountId|AWS::Region)\}")


def resolve_name(value: Any, stack: str, account: str, region: str) -> str | None:
    """A name that is a literal or a ``!Sub`` of pseudo parameters only; None otherwise."""
    if isinstance(value, str):
        return value
    text = value.get("Sub", value.get("Fn::Sub")) if isinstance(value, dict) and len(value) == 1 else None
    if isinstance(text, str):
        pseudo = {"AWS::StackName": stack, "AWS::AccountId": account, "AWS::Region": region}
        resolved = _PSEUDO.sub(lambda m: pseudo[m.group(1)], text)
        return None if "${" in resolved else resolved
    return None


def _literal(value: Any) -> bool:
    """True when ``value`` holds no intrinsic function (no reference to anything outside it)."""
    if isinstance(value, dict):
        return not any(k in {"Ref", "GetAtt", "Sub", "If", "ImportValue", "Join", "Select", "FindInMap"}
                       or k.startswith("Fn::") for k in value) and all(map(_literal, value.values()))
    if isinstance(value, list):
        return all(map(_literal, value))
    return True


def retained_named(template: dict[str, Any], stack: str, account: str,
                   region: str) -> list[tuple[str, str, str]]:
    """(logical id, type, physical name) of the retained resources whose name the template fixes."""
    out = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        rtype = resource.get("Type", "")
        prop = NAME_PROPERTY.get(rtype)
        if prop is None or resource.get("DeletionPolicy") not in ("Retain", "RetainExceptOnCreate"):
            continue
        name = resolve_name((resource.get("Properties") or {}).get(prop), stack, account, region)
        if name:
            out.append((logical_id, rtype, name))
    return out


def import_template(template: dict[str, Any], adopt: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Only the adopted resources, with their name as a literal and their other literal properties."""
    resources = {}
    for logical_id, rtype, name in adopt:
        source = template["Resources"][logical_id]
        props = {k: v for k, v in (source.get("Properties") or {}).items() if _literal(v)}
        props[NAME_PROPERTY[rtype]] = name
        resources[logical_id] = {"Type": rtype, "DeletionPolicy": source["DeletionPolicy"],
                                 "UpdateReplacePolicy": source.get("UpdateReplacePolicy", "Retain"),
                                 "Properties": props}
    return {"AWSTemplateFormatVersion": "2010-09-09",
            "Description": "iotpipe: adopt retained resources of a lost stack", "Resources": resources}


def _exists(clients: Callable[[str], Any], rtype: str, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        if rtype == "AWS::S3::Bucket":
            clients("s3").head_bucket(Bucket=name)
        else:
            clients("dynamodb").describe_table(TableName=name)
    except ClientError:
        return False
    return True


def _stack_status(cfn: Any, stack: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return str(cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
    except ClientError:
        return None


def adopt_retained(stack: str, clients: Callable[[str], Any], region: str,
                   say: Callable[[str], None] = print, timeout_s: float = 120.0) -> list[str]:
    """Import the retained resources of ``stack`` that outlived it; returns their logical ids."""
    cfn = clients("cloudformation")
    status = _stack_status(cfn, stack)
    if status is not None and status not in GONE:
        return []
    account = str(clients("sts").get_caller_identity()["Account"])
    template = load_template()
    orphans = [r for r in retained_named(template, stack, account, region) if _exists(clients, r[1], r[2])]
    if not orphans:
        return []
    say(f"stack '{stack}' is {status or 'absent'} but its retained "
        f"{', '.join(f'{lid} ({name})' for lid, _t, name in orphans)} still exist(s): adopting them "
        "into a new stack (CloudFormation resource import), then deploying")
    if status == "ROLLBACK_COMPLETE":  # only deletable; its retained resources stay
        cfn.delete_stack(StackName=stack)
        _wait(lambda: _stack_status(cfn, stack) in (None, "DELETE_COMPLETE"), timeout_s, "stack deletion")
    change_set = f"iotpipe-adopt-{int(time.time())}"
    cfn.create_change_set(
        StackName=stack, ChangeSetName=change_set, ChangeSetType="IMPORT",
        TemplateBody=json.dumps(import_template(template, orphans)),
        ResourcesToImport=[{"ResourceType": rtype, "LogicalResourceId": lid,
                            "ResourceIdentifier": {NAME_PROPERTY[rtype]: name}}
                           for lid, rtype, name in orphans],
    )

    def ready() -> bool:
        cs = cfn.describe_change_set(StackName=stack, ChangeSetName=change_set)
        if cs["Status"] == "FAILED":
            raise RuntimeError(f"import change set failed: {cs.get('StatusReason', '')}")
        return cs["Status"] == "CREATE_COMPLETE"

    _wait(ready, timeout_s, "import change set")
    cfn.execute_change_set(StackName=stack, ChangeSetName=change_set)

    def imported() -> bool:
        current = _stack_status(cfn, stack) or ""
        if "ROLLBACK" in current or current.endswith("FAILED"):
            raise RuntimeError(f"import of {stack} ended {current}")
        return current == "IMPORT_COMPLETE"

    _wait(imported, timeout_s, "import")
    return [lid for lid, _t, _n in orphans]


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not finish within {timeout_s:.0f} s")
        time.sleep(0.5)
