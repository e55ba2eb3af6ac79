#!/usr/bin/env bash
# Build, package and deploy cloudformation/template.yaml to one target.
#
#   scripts/deploy.sh [--target embedded|localstack|aws] [--stack NAME] [--region REGION]
#                     [--param Key=Value ...] [--yes] [--dry-run] [--no-build] [--template FILE]
#                     [--test-hooks none|faults]
#
# The same template and the same AWS CLI calls serve every target; only the endpoint and the
# credentials differ:
#   embedded    AWS_ENDPOINT_URL from the environment (iotpipe up / the test fixture set it),
#               test credentials
#   localstack  AWS_ENDPOINT_URL (default http://localhost:4566), test credentials
#   aws         no endpoint, your credentials; shows account and region and asks before deploying
#               (--yes skips the question, for CI)
# With --param DetectorBackend=sagemaker and no SageMakerEndpointName, the stack creates a serverless
# SageMaker endpoint: on AWS this script first builds serving/Dockerfile and pushes it to the ECR
# repository <stack>-detector (created if missing; tag = hash of what goes into the image, pushed only
# if absent) and passes its URI as ModelImageUri. The emulators have no SageMaker: there the caller
# names the endpoint and the local serving process (SageMakerRuntimeUrl; iotpipe up --detector sagemaker).
# --dry-run prints the AWS CLI calls instead of making them. After the stack, the REST API's stage is
# pointed at a deployment of the current definition (CloudFormation never re-creates a fixed
# AWS::ApiGateway::Deployment on update, so route changes would otherwise never be published).
# Environment: TARGET, STACK_NAME, AWS_REGION, AWS_ENDPOINT_URL, AWS_CLI (default: aws), PYTHON, TEMPLATE,
# DOCKER (default: docker), MODEL_REPOSITORY (default: <stack>-detector).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${TARGET:-embedded}"
STACK="${STACK_NAME:-iotpipe}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
# The project's environment has the AWS CLI and a Python 3.12 for the build; fall back to PATH.
DEFAULT_BIN="$ROOT/.venv/bin"
[ -x "$DEFAULT_BIN/aws" ] || DEFAULT_BIN=""
AWS_CLI="${AWS_CLI:-${DEFAULT_BIN:+$DEFAULT_BIN/}aws}"
PYTHON="${PYTHON:-${DEFAULT_BIN:+$DEFAULT_BIN/}python3}"
YES=0
DRY_RUN=0
BUILD=1
PARAMS=()
TEMPLATE="${TEMPLATE:-$ROOT/cloudformation/template.yaml}"
TEST_HOOKS="${IOTPIPE_TEST_HOOKS:-none}"

usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --target) TARGET="$2"; shift 2 ;;
    --stack) STACK="$2"; shift 2 ;;
    --region) REGION="$2"; shift 2 ;;
    --param) PARAMS+=("$2"); shift 2 ;;
    --yes|-y) YES=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --template) TEMPLATE="$2"; shift 2 ;;
    --test-hooks) TEST_HOOKS="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$TARGET" in
  embedded)
    if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
      echo "deploy.sh: target 'embedded' needs AWS_ENDPOINT_URL (start it with 'iotpipe up' or 'iotpipe emulator start')" >&2
      [ "$DRY_RUN" = 1 ] || exit 2
      export AWS_ENDPOINT_URL="http://127.0.0.1:4566"
    fi
    # ministack's CloudFormation has no AWS::Athena::NamedQuery provider: Glue tables and the workgroup
    # only (iotpipe query --named reads the query texts from the template); a --param given wins.
    # Nor an AWS::ApplicationAutoScaling provider: the aggregates table keeps its fixed provisioned
    # capacity there (ministack does not throttle it anyway).
    # Its IoT Core runs the broker and topic rules but has no kinesis rule action: the readings rule
    # queues the readings for the IoT ingest function instead (IotRuleAction=sqs, docs/mqtt-devices.md).
    # It enforces IAM (AUTH=true) but cannot evaluate the namespace condition of PutMetricData nor
    # serve TLS to the functions: IamEnforcer=ministack drops those two (docs/security.md).
    # ministack invokes as soon as records exist; BatchingWindowSeconds=1 says so (as on LocalStack).
    PARAMS=("ArchiveSql=catalog" "AggregatesCapacityScaling=disabled" "IotCoreIngest=enabled"
            "IotRuleAction=sqs" "IamEnforcer=ministack" "BatchingWindowSeconds=1" ${PARAMS[@]+"${PARAMS[@]}"})
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}" ;;
  localstack)
    # No AWS::ApiGateway::Authorizer in LocalStack 4.14 community: the ingest function checks device
    # credentials itself (docs/security.md); a --param DeviceAuthMode=... given above wins.
    # Nor Glue nor Athena in LocalStack 4.14 community: no SQL over the archive there (docs/querying.md).
    # A laptop wants readings queryable in seconds (the live view, the tests), and its batches cost no
    # bill: BatchingWindowSeconds=1 instead of the AWS default of 60 (LocalStack honours the window).
    PARAMS=("DeviceAuthMode=function" "ArchiveSql=disabled" "BatchingWindowSeconds=1" ${PARAMS[@]+"${PARAMS[@]}"})
    export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL:-http://localhost:4566}"
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}" ;;
  aws)
    unset AWS_ENDPOINT_URL ;;
  *) echo "deploy.sh: --target must be embedded, localstack or aws (got '$TARGET')" >&2; exit 2 ;;
esac
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
case "$TEST_HOOKS" in
  none) ;;
  faults) PARAMS+=("TestHooks=faults") ;;
  *) echo "deploy.sh: --test-hooks must be none or faults (got '$TEST_HOOKS')" >&2; exit 2 ;;
esac
BUILD_ARGS=()
[ "$TEST_HOOKS" = none ] || BUILD_ARGS=(--test-hooks)

ENDPOINT_ARGS=()
[ -n "${AWS_ENDPOINT_URL:-}" ] && ENDPOINT_ARGS=(--endpoint-url "$AWS_ENDPOINT_URL")

# Print a command the way a person would type it; run it unless this is a dry run.
run() {
  printf '+ %s\n' "$(printf '%q ' "$@")" >&2
  [ "$DRY_RUN" = 1 ] && return 0
  "$@"
}

if [ "$TARGET" = aws ] && [ "$DRY_RUN" = 0 ]; then
  ACCOUNT="$("$AWS_CLI" sts get-caller-identity --query Account --output text)"
else
  ACCOUNT="000000000000"
  if [ "$DRY_RUN" = 0 ]; then
    ACCOUNT="$("$AWS_CLI" "${ENDPOINT_ARGS[@]}" sts get-caller-identity --query Account --output text 2>/dev/null || echo 000000000000)"
  fi
fi
ARTIFACTS_BUCKET="${ARTIFACTS_BUCKET:-${STACK}-artifacts-${ACCOUNT}-${REGION}}"

echo "== deploy: target=$TARGET stack=$STACK region=$REGION account=$ACCOUNT endpoint=${AWS_ENDPOINT_URL:-<AWS>} test-hooks=$TEST_HOOKS" >&2
if [ "$TARGET" = aws ] && [ "$YES" = 0 ] && [ "$DRY_RUN" = 0 ]; then
  read -r -p "Deploy stack '$STACK' to AWS account $ACCOUNT in $REGION? [y/N] " answer
  case "$answer" in y|Y|yes|YES) ;; *) echo "aborted" >&2; exit 1 ;; esac
fi

# The value of a --param (the last one given wins, as in CloudFormation's overrides); empty if absent.
param() {
  local value="" p
  for p in ${PARAMS[@]+"${PARAMS[@]}"}; do
    case "$p" in "$1="*) value="${p#*=}" ;; esac
  done
  printf '%s' "$value"
}

# The SageMaker endpoint the stack creates needs its serving image in ECR first (AWS only).
if [ "$(param DetectorBackend)" = sagemaker ] && [ -z "$(param SageMakerEndpointName)" ]; then
  if [ "$TARGET" != aws ]; then
    echo "deploy.sh: the emulators have no SageMaker: with DetectorBackend=sagemaker pass SageMakerEndpointName" \
      "and SageMakerRuntimeUrl of a local serving process ('iotpipe up --detector sagemaker' does)" >&2
    exit 2
  fi
  if [ "$STACK" != "$(printf '%s' "$STACK" | tr '[:upper:]' '[:lower:]')" ]; then
    # IAM compares SageMaker endpoint ARNs in lower case: <Stack>-detector could never be invoked.
    echo "deploy.sh: with the SageMaker endpoint the stack name must be lower case (got '$STACK')" >&2
    exit 2
  fi
  if [ -z "$(param ModelImageUri)" ]; then
    DOCKER="${DOCKER:-docker}"
    REPOSITORY="${MODEL_REPOSITORY:-$STACK-detector}"
    REGISTRY="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
    # The tag is the content hash of everything the image copies: a changed model or scorer is a new
    # tag, hence a new AWS::SageMaker::Model and endpoint configuration (the endpoint updates in place).
    TAG="$(cd "$ROOT" && find serving functions/__init__.py functions/settings.py functions/core functions/detector \
      model/artifacts constraints.txt -type f ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum \
      | sha256sum | cut -c1-16)"
    IMAGE="$REGISTRY/$REPOSITORY:$TAG"
    echo "== model image: $IMAGE (serving/Dockerfile)" >&2
    if [ "$DRY_RUN" = 1 ] || ! "$AWS_CLI" ecr describe-repositories --repository-names "$REPOSITORY" >/dev/null 2>&1; then
      run "$AWS_CLI" ecr create-repository --repository-name "$REPOSITORY" --image-tag-mutability IMMUTABLE \
        --image-scanning-configuration scanOnPush=true --encryption-configuration encryptionType=KMS >/dev/null
    fi
    if [ "$DRY_RUN" = 1 ] || ! "$AWS_CLI" ecr describe-images --repository-name "$REPOSITORY" \
        --image-ids "imageTag=$TAG" >/dev/null 2>&1; then
      printf '+ %s | %s\n' "$(printf '%q ' "$AWS_CLI" ecr get-login-password --region "$REGION")" \
        "$(printf '%q ' "$DOCKER" login --username AWS --password-stdin "$REGISTRY")" >&2
      [ "$DRY_RUN" = 1 ] || "$AWS_CLI" ecr get-login-password --region "$REGION" \
        | "$DOCKER" login --username AWS --password-stdin "$REGISTRY" >/dev/null
      # SageMaker pulls linux/amd64 images with a single-platform manifest (no provenance index).
      run "$DOCKER" build --platform linux/amd64 --provenance=false -f "$ROOT/serving/Dockerfile" \
        -t "$REPOSITORY:$TAG" "$ROOT"
      run "$DOCKER" tag "$REPOSITORY:$TAG" "$IMAGE"
      run "$DOCKER" push "$IMAGE"
    else
      echo "   $IMAGE is already in ECR" >&2
    fi
    PARAMS+=("ModelImageUri=$IMAGE")
  fi
fi

if [ "$BUILD" = 1 ]; then
  echo "== build: function code packages (dependencies inside, no layer)" >&2
  if [ "$DRY_RUN" = 1 ]; then
    printf '+ %s\n' "$PYTHON scripts/build.py --out $ROOT/build ${BUILD_ARGS[*]:-}" >&2
  else
    "$PYTHON" "$ROOT/scripts/build.py" --out "$ROOT/build" ${BUILD_ARGS[@]+"${BUILD_ARGS[@]}"}
  fi
fi

# `cloudformation package` only rewrites literal local Code paths, so a test-hooks deploy packages a
# copy of the template whose processor Code is the test-hooks zip (relative Code paths made absolute,
# as the copy lives elsewhere). The template itself never names it: non-test deploys cannot pick it up.
PACKAGE_TEMPLATE="$TEMPLATE"
if [ "$TEST_HOOKS" != none ]; then
  mkdir -p "$ROOT/build"
  PACKAGE_TEMPLATE="$ROOT/build/template-testhooks-$STACK.yaml"
  TEMPLATE_DIR="$(cd "$(dirname "$TEMPLATE")" && pwd)"
  sed -E -e "s#^([[:space:]]*Code: )([^/s][^[:space:]]*)\$#\1$TEMPLATE_DIR/\2#" \
    -e 's#^([[:space:]]*Code: .*)/processor\.zip$#\1/processor-testhooks.zip#' "$TEMPLATE" >"$PACKAGE_TEMPLATE"
  if ! grep -q 'Code: .*/processor-testhooks\.zip$' "$PACKAGE_TEMPLATE"; then
    echo "deploy.sh: no 'Code: .../processor.zip' line in $TEMPLATE to swap for the test-hooks package" >&2
    exit 2
  fi
  echo "== test hooks: processor code build/processor-testhooks.zip (template copy $PACKAGE_TEMPLATE)" >&2
fi

echo "== artifacts bucket: $ARTIFACTS_BUCKET" >&2
if [ "$DRY_RUN" = 1 ] || ! "$AWS_CLI" "${ENDPOINT_ARGS[@]}" s3api head-bucket --bucket "$ARTIFACTS_BUCKET" >/dev/null 2>&1; then
  if [ "$REGION" = us-east-1 ]; then
    run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" s3api create-bucket --bucket "$ARTIFACTS_BUCKET" >/dev/null
  else
    run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" s3api create-bucket --bucket "$ARTIFACTS_BUCKET" \
      --create-bucket-configuration "LocationConstraint=$REGION" >/dev/null
  fi
  run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" s3api put-public-access-block --bucket "$ARTIFACTS_BUCKET" \
    --public-access-block-configuration BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" s3api put-bucket-encryption --bucket "$ARTIFACTS_BUCKET" \
    --server-side-encryption-configuration '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
fi

echo "== package" >&2
mkdir -p "$ROOT/build"
run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation package \
  --template-file "$PACKAGE_TEMPLATE" \
  --s3-bucket "$ARTIFACTS_BUCKET" --s3-prefix "$STACK" \
  --output-template-file "$ROOT/build/packaged.yaml" 2>&1 >/dev/null \
  | { tr '\r' '\n' | grep -v '^Uploading to ' >&2 || true; }  # drop the per-chunk upload progress
# The test-hooks template copy has served its purpose (packaged.yaml holds the result).
[ "$TEST_HOOKS" = none ] || [ "$DRY_RUN" = 1 ] || rm -f "$PACKAGE_TEMPLATE"

# A first create that failed leaves the stack in ROLLBACK_COMPLETE, which CloudFormation can only
# delete; remove it so this run can create it again.
if [ "$DRY_RUN" = 0 ]; then
  STATUS="$("$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].StackStatus" --output text 2>/dev/null || true)"
  if [ "$STATUS" = ROLLBACK_COMPLETE ]; then
    echo "== stack $STACK is ROLLBACK_COMPLETE from a failed create: deleting it first" >&2
    run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation delete-stack --stack-name "$STACK"
    run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation wait stack-delete-complete --stack-name "$STACK"
  fi
fi

# The template is over CloudFormation's 51,200-byte inline limit, so deploy goes through the bucket too.
echo "== deploy (creates or updates in place; waits for completion)" >&2
OVERRIDES=()
[ ${#PARAMS[@]} -gt 0 ] && OVERRIDES=(--parameter-overrides "${PARAMS[@]}")
if ! run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation deploy \
  --template-file "$ROOT/build/packaged.yaml" \
  --stack-name "$STACK" \
  --s3-bucket "$ARTIFACTS_BUCKET" --s3-prefix "$STACK" \
  --capabilities CAPABILITY_IAM CAPABILITY_NAMED_IAM \
  --no-fail-on-empty-changeset \
  "${OVERRIDES[@]}"; then
  echo "== deploy failed; the failed events:" >&2
  "$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation describe-stack-events --stack-name "$STACK" \
    --query "StackEvents[?contains(ResourceStatus,'FAILED')].[LogicalResourceId,ResourceStatusReason]" \
    --output text >&2 || true
  exit 1
fi

# Publish the API: CloudFormation creates ApiDeployment once and never again on update, so the stage
# would keep serving the first snapshot of routes, integrations and gateway responses. The stage's
# deployment is tagged with the template's hash; a deploy whose template differs creates a new
# deployment of the current definition on the stage (the same calls on every target).
API_REVISION="iotpipe template sha256:$(sha256sum "$TEMPLATE" | cut -c1-16)"
echo "== publish API (stage prod serves: $API_REVISION)" >&2
if [ "$DRY_RUN" = 1 ]; then
  run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" apigateway create-deployment --rest-api-id "<RestApiId>" \
    --stage-name prod --description "$API_REVISION"
else
  API_ID="$("$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='RestApiId'].OutputValue" --output text)"
  CURRENT="$("$AWS_CLI" "${ENDPOINT_ARGS[@]}" apigateway get-stage --rest-api-id "$API_ID" --stage-name prod \
    --query deploymentId --output text)"
  CURRENT_REVISION="$("$AWS_CLI" "${ENDPOINT_ARGS[@]}" apigateway get-deployment --rest-api-id "$API_ID" \
    --deployment-id "$CURRENT" --query description --output text 2>/dev/null || true)"
  if [ "$CURRENT_REVISION" = "$API_REVISION" ]; then
    echo "   stage prod already serves this definition (deployment $CURRENT)" >&2
  else
    run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" apigateway create-deployment --rest-api-id "$API_ID" \
      --stage-name prod --description "$API_REVISION" --query id --output text >&2
  fi
fi

echo "== outputs" >&2
run "$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
  --query "Stacks[0].Outputs[].[OutputKey,OutputValue]" --output text
if [ "$DRY_RUN" = 0 ]; then
  # The URL to call on this target: LocalStack's documented local form, ministack's, or AWS's (ApiUrl).
  case "$TARGET" in
    localstack) echo "LocalApiUrl	${AWS_ENDPOINT_URL%/}/restapis/${API_ID}/prod/_user_request_" ;;
    embedded) echo "LocalApiUrl	${AWS_ENDPOINT_URL%/}/_aws/execute-api/${API_ID}/prod" ;;
  esac
  # Key values: printed on the emulators (throw-away test accounts); on AWS, the command that reads one.
  for KEY_OUTPUT in $("$AWS_CLI" "${ENDPOINT_ARGS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
      --query "Stacks[0].Outputs[?ends_with(OutputKey, 'ApiKeyId')].[OutputKey,OutputValue]" --output text \
      | tr '\t' '='); do
    NAME="${KEY_OUTPUT%%=*}"; KEY_ID="${KEY_OUTPUT#*=}"
    if [ "$TARGET" = aws ]; then
      echo "${NAME%Id}	(aws apigateway get-api-key --api-key $KEY_ID --include-value --query value --output text)"
    else
      echo "${NAME%Id}	$("$AWS_CLI" "${ENDPOINT_ARGS[@]}" apigateway get-api-key --api-key "$KEY_ID" \
        --include-value --query value --output text)"
    fi
  done
fi
