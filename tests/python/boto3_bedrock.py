"""boto3's bedrock-runtime client converses with the local Bedrock (endpoint from
AWS_ENDPOINT_URL_BEDROCK_RUNTIME), signed with credentials from the local STS for the library's
v1 web-identity token, and runs the get_weather tool round trip."""
import json
import os

import boto3
from botocore import UNSIGNED
from botocore.config import Config

region = os.environ["AWS_REGION"]
sts = boto3.client("sts", region_name=region, config=Config(signature_version=UNSIGNED))
c = sts.assume_role_with_web_identity(
    RoleArn=os.environ["AWS_ROLE_ARN"], RoleSessionName="boto3-bedrock", WebIdentityToken=os.environ["WEB_IDENTITY_TOKEN"]
)["Credentials"]
brt = boto3.client(
    "bedrock-runtime",
    region_name=region,
    aws_access_key_id=c["AccessKeyId"],
    aws_secret_access_key=c["SecretAccessKey"],
    aws_session_token=c["SessionToken"],
)
tools = {"tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather for a city",
                                  "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}]}
messages = [{"role": "user", "content": [{"text": "Weather in Dallas?"}]}]
first = brt.converse(modelId=os.environ["BEDROCK_MODEL_ID"], messages=messages, toolConfig=tools)
use = next(b["toolUse"] for b in first["output"]["message"]["content"] if "toolUse" in b)
messages.append(first["output"]["message"])
messages.append({"role": "user", "content": [{"toolResult": {"toolUseId": use["toolUseId"], "status": "success", "content": [
    {"json": {"city": "Dallas", "temperature": 71, "temperature_unit": "F", "condition": "Clear Sky", "humidity": 40, "wind_speed": 9, "wind_unit": "mph"}}]}}]})
second = brt.converse(modelId=os.environ["BEDROCK_MODEL_ID"], messages=messages, toolConfig=tools)
invoke = brt.invoke_model(modelId=os.environ["BEDROCK_MODEL_ID"], body=json.dumps(
    {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}))
print(json.dumps({
    "first_stop": first["stopReason"], "tool_input": use["input"],
    "answer": second["output"]["message"]["content"][0]["text"], "usage": second["usage"],
    "invoke_stop": json.loads(invoke["body"].read())["stop_reason"],
}))
