"""The SageMaker endpoint in the template: created only when asked for, reachable only by the processor."""

from __future__ import annotations

from typing import Any

import pytest

from iotpipe.ops.template import load_template

ENDPOINT_RESOURCES = {"DetectorModelRole", "DetectorEndpointLogGroup", "DetectorModel",
                      "DetectorEndpointConfig", "DetectorEndpoint"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_the_endpoint_resources_exist_only_under_their_condition(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    sagemaker = {k for k, v in resources.items() if v["Type"].startswith("AWS::SageMaker::")}
    assert sagemaker == {"DetectorModel", "DetectorEndpointConfig", "DetectorEndpoint"}
    for name in ENDPOINT_RESOURCES:
        assert resources[name].get("Condition") == "CreateDetectorEndpoint", name
    # sagemaker backend AND no existing endpoint named: the default (embedded) stack creates none of it
    assert template["Conditions"]["CreateDetectorEndpoint"] == {"And": [
        {"Condition": "UseSageMaker"}, {"Equals": [{"Ref": "SageMakerEndpointName"}, ""]}]}
    assert template["Parameters"]["DetectorBackend"]["Default"] == "embedded"
    # no unconditional resource refers to a conditional one (the emulators deploy without them)
    def refs(node: Any) -> set[str]:
        if isinstance(node, dict):
            found = {node["Ref"]} if isinstance(node.get("Ref"), str) else set()
            if "GetAtt" in node:
                target = node["GetAtt"]
                found.add(target[0] if isinstance(target, list) else target.split(".")[0])
            if "DependsOn" in node:
                depends = node["DependsOn"]
                found |= set(depends if isinstance(depends, list) else [depends])
            return found.union(*(refs(v) for v in node.values()))
        if isinstance(node, list):
            return set().union(*(refs(v) for v in node))
        return set()
    for name, resource in resources.items():
        if resource.get("Condition") != "CreateDetectorEndpoint":
            assert not refs(resource) & ENDPOINT_RESOURCES, name


def test_a_serverless_endpoint_sized_by_parameters(template: dict[str, Any]) -> None:
    variant = template["Resources"]["DetectorEndpointConfig"]["Properties"]["ProductionVariants"]
    assert len(variant) == 1
    assert variant[0]["ServerlessConfig"] == {"MemorySizeInMB": {"Ref": "SageMakerServerlessMemoryMB"},
                                              "MaxConcurrency": {"Ref": "SageMakerServerlessMaxConcurrency"}}
    container = template["Resources"]["DetectorModel"]["Properties"]
    assert container["PrimaryContainer"]["Image"] == {"Ref": "ModelImageUri"}
    assert container["EnableNetworkIsolation"] is True


def test_the_model_role_pulls_from_one_repository_and_writes_its_own_logs(template: dict[str, Any]) -> None:
    role = template["Resources"]["DetectorModelRole"]["Properties"]
    principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "sagemaker.amazonaws.com"}
    statements = {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}
    assert set(statements) == {"PullTheServingImage", "EcrAuthorizationTokenHasNoResourceScope", "Logs"}
    pull = statements["PullTheServingImage"]["Resource"]["Sub"]
    assert pull[0].endswith(":repository/${Repo}")
    assert statements["Logs"]["Resource"] == {"Sub": "${DetectorEndpointLogGroup.Arn}"}


def test_the_processor_may_invoke_only_the_endpoint_it_uses(template: dict[str, Any]) -> None:
    processor = template["Resources"]["ProcessorRole"]["Properties"]["Policies"]
    statement = next(s for p in processor for s in p["PolicyDocument"]["Statement"]
                     if s["Sid"] == "InvokeModelEndpoint")
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    used, unused = statement["Resource"]["If"][1:]
    assert used["Sub"][1] == {"Name": {"If": ["CreateDetectorEndpoint", {"Sub": "${AWS::StackName}-detector"},
                                              {"Ref": "SageMakerEndpointName"}]}}
    assert unused["Sub"].endswith(":endpoint/${AWS::StackName}-unused")
    env = template["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"]
    # the function calls the same name the policy allows
    assert env["SAGEMAKER_ENDPOINT"]["If"][1] == used["Sub"][1]["Name"]
    # locally the runtime API is the serving process; on AWS (empty parameter) the SDK's own endpoint
    assert env["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] == {
        "If": ["HasSageMakerRuntimeUrl", {"Ref": "SageMakerRuntimeUrl"}, {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["SageMakerRuntimeUrl"]["Default"] == ""
