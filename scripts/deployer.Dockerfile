# One-shot deployer for docker compose: runs scripts/deploy.sh against LocalStack.
FROM python:3.12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends zip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt "awscli>=1.36,<2" "boto3>=1.35,<2"
COPY functions/ functions/
COPY model/ model/
COPY cloudformation/ cloudformation/
COPY scripts/ scripts/
ENV PYTHON=python3 AWS_CLI=aws
ENTRYPOINT []
CMD ["bash", "scripts/deploy.sh", "--target", "localstack", "--yes"]
