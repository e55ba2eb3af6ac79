"""A re-deploy publishes API changes: deploy, change a route, deploy again, call the changed route.

CloudFormation creates ``ApiDeployment`` once and never re-creates it on a stack update, so on AWS
the stage would go on serving the first snapshot of the routes. scripts/deploy.sh points the stage
at a deployment of the current definition whenever the template changed; this test adds a route
(a public ``GET /revision-probe``) in a copy of the real template, deploys it over a stack of its own
through scripts/deploy.sh, and calls the route through the emulator's API Gateway. (A new route, not a
changed flag on an existing one: LocalStack 4.14's CloudFormation updates an existing
``AWS::ApiGateway::Method`` by re-putting its integration only, so e.g. a changed ``ApiKeyRequired``
never reaches its API, published or not.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from iotpipe.ops.stack import ROOT, deploy, stack_outputs
from tests.integration.stacks import delete_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ANCHOR = "\n  DocsResource:\n"
# A new public route served by the query function. Before it is published, /revision-probe falls
# under the key-protected {proxy+} route (403 without a key); once published, the function answers
# it without a key (the app has no such page: its own JSON 404).
NEW_ROUTE = """
  RevisionProbeResource:
    Type: AWS::ApiGateway::Resource
    Properties:
      RestApiId: !Ref RestApi
      ParentId: !GetAtt RestApi.RootResourceId
      PathPart: revision-probe

  RevisionProbeMethod:
    Type: AWS::ApiGateway::Method
    Properties:
      RestApiId: !Ref RestApi
      ResourceId: !Ref RevisionProbeResource
      HttpMethod: GET
      AuthorizationType: NONE
      ApiKeyRequired: false
      Integration:
        Type: AWS_PROXY
        IntegrationHttpMethod: POST
        Uri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/\
${QueryApiFunction.Arn}/invocations"
"""


def _changed_template(tmp: Path) -> Path:
    """A copy of the real template with the new route; beside a link to build/ (Code paths are relative)."""
    source = (ROOT / "cloudformation" / "template.yaml").read_text()
    assert source.count(ANCHOR) == 1, "DocsResource moved: update this test's anchor"
    (tmp / "cloudformation").mkdir()
    (tmp / "build").symlink_to(ROOT / "build")
    changed = tmp / "cloudformation" / "template.yaml"
    changed.write_text(source.replace(ANCHOR, NEW_ROUTE + ANCHOR))
    return changed


@pytest.fixture(scope="module")
def own_stack(emulator_endpoint: str) -> Iterator[str]:
    name = f"rd-{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        delete_stack(name)


def test_redeploy_publishes_a_changed_route(own_stack: str, tmp_path: Path) -> None:
    target = os.environ.get("IOTPIPE_TARGET", "embedded")
    # GIVEN the stack deployed from the real template: /revision-probe is under the key-protected proxy
    deploy(own_stack, target=target, quiet=True)
    outputs = stack_outputs(own_stack)
    url = outputs["ApiUrl"].rstrip("/") + "/revision-probe"
    before = httpx.get(url, timeout=30)
    assert before.status_code == 403, before.text
    first_deployment = _stage_deployment(outputs["RestApiId"])

    # WHEN a public route /revision-probe is added and the same script deploys again
    deploy(own_stack, target=target, quiet=True, extra_args=["--template", str(_changed_template(tmp_path))])

    # THEN the stage serves it: no key needed, the function answers (the app's own JSON 404)
    after = httpx.get(url, timeout=30)
    assert after.status_code == 404, f"the changed route was not published: {after.status_code} {after.text}"
    assert after.json()["error"]["code"] == "not_found"
    assert _stage_deployment(outputs["RestApiId"]) != first_deployment


def test_redeploy_without_change_keeps_the_stage_deployment(own_stack: str) -> None:
    # GIVEN the stack of the test above, deployed again from the real template (the route goes, a new
    # deployment is published), then once more unchanged
    target = os.environ.get("IOTPIPE_TARGET", "embedded")
    deploy(own_stack, target=target, quiet=True)
    outputs = stack_outputs(own_stack)
    published = _stage_deployment(outputs["RestApiId"])
    assert httpx.get(outputs["ApiUrl"].rstrip("/") + "/revision-probe", timeout=30).status_code == 403
    deploy(own_stack, target=target, quiet=True)
    # THEN the unchanged deploy created no new deployment
    assert _stage_deployment(outputs["RestApiId"]) == published


def _stage_deployment(api_id: str) -> str:
    return str(boto3.client("apigateway").get_stage(restApiId=api_id, stageName="prod")["deploymentId"])
